"""``manage.py dicom_listen`` as a process of its own, for the tests that need one: the
listener's memory (VmRSS), its stderr, signals sent to it, its exit status.

Shared helpers, imported by test modules (not a conftest.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AE_TITLE = "PP_LIMITS"


def migrated_database(directory: Path) -> Path:
    """A migrated SQLite database of the listener's own (never the developer's or CI's)."""
    path = directory / "protonpath.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{path}", "PYTHONPATH": str(REPO / "src")}
    subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "--no-input", "-v", "0"],
                   env=env, cwd=REPO, check=True, timeout=600)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echoscu(port: int, calling: str = "HOSPITAL", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("echoscu") or "echoscu", "-aet", calling, "-aec", AE_TITLE, "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=timeout,
    )


class ListenerProcess:
    """``manage.py dicom_listen`` on a free port of 127.0.0.1, with settings from ``env``
    (e.g. ``DICOM_REQUEST_TIMEOUT_S``), its output in files under ``workdir``."""

    def __init__(self, workdir: Path, database: Path, **env: str):
        self.workdir = workdir
        self.database = database
        self.port = free_port()
        self.var_dir = workdir / "var"
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = workdir / "listener.out"
        self.stderr_path = workdir / "listener.err"
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{database}",
            "PROTONPATH_VAR_DIR": str(self.var_dir),
            "PYTHONPATH": str(REPO / "src"),
            "PYTHONUNBUFFERED": "1",
            "DICOM_AE_TITLE": AE_TITLE,
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> ListenerProcess:
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "manage.py"), "dicom_listen", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, cwd=REPO, stdout=out, stderr=err,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the listener exited: {self.stderr()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"the listener never listened: {self.stderr()}")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def incoming(self) -> Path:
        return self.var_dir / "dicom-incoming"

    def rss_kib(self) -> int:
        """The listener's resident memory, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def query(self, sql: str, *params: object) -> list[tuple]:
        with sqlite3.connect(self.database, timeout=30) as db:
            return db.execute(sql, params).fetchall()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def __enter__(self) -> ListenerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
