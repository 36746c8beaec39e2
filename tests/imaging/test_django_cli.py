"""``protonpath dicom-listen`` and ``manage.py dicom_listen`` start the receiver with the
settings' AE title, port and address (checked with dcmtk's echoscu as the peer)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.dicom_peer


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory) -> str:
    """A migrated SQLite database of the commands' own (the listener closes transfers left in
    progress when it starts, so it needs the tables; and never the developer's or CI's database)."""
    path = tmp_path_factory.mktemp("listener-db") / "protonpath.sqlite3"
    url = f"sqlite:///{path}"
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(REPO / "src")}
    subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "--no-input", "-v", "0"],
                   env=env, cwd=REPO, check=True, timeout=300)
    return url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _echo(port: int, ae_title: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("echoscu") or "echoscu", "-aec", ae_title, "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=30,
    )


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "protonpath", "dicom-listen"],
        [sys.executable, str(REPO / "manage.py"), "dicom_listen"],
    ],
    ids=["protonpath-cli", "manage.py"],
)
def test_the_listener_command_answers_echo_with_the_settings_ae_title_and_port(command, tmp_path, migrated_database):
    port = _free_port()
    env = {
        **os.environ,
        "DICOM_PORT": str(port),
        "DICOM_AE_TITLE": "PP_TEST_NODE",
        "DICOM_BIND_ADDRESS": "127.0.0.1",
        "PROTONPATH_VAR_DIR": str(tmp_path),
        "PYTHONPATH": str(REPO / "src"),
        "DATABASE_URL": migrated_database,
    }
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        result = None
        while time.monotonic() < deadline:
            result = _echo(port, "PP_TEST_NODE")
            if result.returncode == 0 or process.poll() is not None:
                break
            time.sleep(0.5)
        assert result is not None and result.returncode == 0, (result and result.stderr, process.poll())
        # Called with another AE title, the association is rejected.
        assert _echo(port, "SOMEONE_ELSE").returncode != 0
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"PP_TEST_NODE on 127.0.0.1:{port}" in output
