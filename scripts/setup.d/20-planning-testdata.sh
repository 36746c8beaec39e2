#!/usr/bin/env bash
# Test data for tests/planning and bench/planning.py: the pyRadPlan wheel from PyPI, which ships
# matRad's TG119 phantom (pyRadPlan/data/phantoms/TG119.mat) and generic proton machine
# (pyRadPlan/data/machines/protons_Generic.mat). The tests read those files straight from the
# wheel (protonpath.planning.matrad_io.find_pyradplan_wheel looks in .cache/wheels). The wheel
# is only downloaded, never installed in the project's environment. Idempotent.
set -euo pipefail
VENV="${VENV:-.venv}"
DEST=.cache/wheels
VERSION=0.5.0
if compgen -G "$DEST/pyradplan-*.whl" > /dev/null; then
    exit 0
fi
mkdir -p "$DEST"
"$VENV/bin/pip" download --quiet --no-deps "pyradplan==$VERSION" -d "$DEST"
echo "planning test data: pyRadPlan $VERSION wheel (TG119 phantom) in $DEST"
