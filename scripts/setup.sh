#!/usr/bin/env bash
# Sets up everything protonpath needs on a fresh Debian machine, and does nothing when all is there:
# Debian packages (Chromium for browser tests, dcmtk as DICOM peer, Pango for PDFs, gettext),
# the virtual environment with the project and its test tools, the steps in scripts/setup.d/,
# and the compiled translations.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
export VENV

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages -------------------------------------------------------------------------
APT_PACKAGES=(chromium dcmtk gettext fonts-dejavu-core libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 poppler-utils)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Virtual environment ---------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
stamp="$VENV/.protonpath-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing protonpath and its dependencies"
  "$VENV/bin/pip" install -q -e ".[test]"
  echo "$want" > "$stamp"
fi

# 3. Domain set-up steps (test data from packages, ...) ------------------------------------------
for step in scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  bash "$step"
done

# 4. Translations ----------------------------------------------------------------------------
if command -v msgfmt >/dev/null; then
  # DEBUG=1: compiling catalogues needs no SECRET_KEY (the settings refuse to load without one otherwise).
  (cd src/protonpath && DEBUG=1 "$VENV/bin/python" "$ROOT/manage.py" compilemessages -v 0 --ignore=.venv)
fi
