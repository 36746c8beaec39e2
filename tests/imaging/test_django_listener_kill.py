"""A real listener process (``manage.py dicom_listen``) killed with SIGKILL in the middle of
transfers from dcmtk's storescu, at several points, and started again (issue 17, item 3): after
each restart nothing is left over (incoming files, partial files, empty folders, files in the
storage without an index entry), every instance acknowledged to storescu is indexed exactly once,
and a last resend completes the study."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest

from protonpath.imaging.reserve import RESERVE_DIR
from tests.imaging.dicomdata import write_ct_series

REPO = Path(__file__).resolve().parents[2]
AE_TITLE = "PP_KILL_TEST"
INSTANCES = 40

pytestmark = pytest.mark.dicom_peer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """The listener command in a process of its own, with its own database and var folder."""

    def __init__(self, var: Path):
        self.var = var
        self.database = var / "listener.sqlite3"
        self.port = _free_port()
        self.env = {
            **os.environ,
            "DICOM_PORT": str(self.port), "DICOM_AE_TITLE": AE_TITLE, "DICOM_BIND_ADDRESS": "127.0.0.1",
            "PROTONPATH_VAR_DIR": str(var), "DATABASE_URL": f"sqlite:///{self.database}",
            "PYTHONPATH": str(REPO / "src"), "TCP_NODELAY": "1",
        }
        subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "--no-input", "-v", "0"],
                       env=self.env, cwd=REPO, check=True, timeout=300)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.var / "listener.log", "ab")  # noqa: SIM115 (kept open by the process)
        self.process = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "dicom_listen"],
                                        env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            echo = subprocess.run([shutil.which("echoscu"), "-aec", AE_TITLE, "127.0.0.1", str(self.port)],
                                  capture_output=True, timeout=30)
            if echo.returncode == 0:
                return
            assert self.process.poll() is None, (self.var / "listener.log").read_text()[-3000:]
            time.sleep(0.3)
        pytest.fail("the listener did not start")

    def wait_reserve(self) -> None:
        """Until the journal's reserve is full (DICOM_JOURNAL_RESERVE slot files, as the tests'
        settings set it), none being made: the next instances are written into its slots."""
        reserve = self.var / "dicom-incoming" / RESERVE_DIR
        wanted = int(self.env["DICOM_JOURNAL_RESERVE"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            names = [p.name for p in reserve.iterdir()] if reserve.is_dir() else []
            if len(names) == wanted and all(name.endswith(".slot") for name in names):
                return
            time.sleep(0.05)
        pytest.fail(f"the journal's reserve was not filled: {names}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)

    def rows(self) -> list[tuple[str, str]]:
        with sqlite3.connect(self.database) as db:
            return db.execute("SELECT sop_instance_uid, file FROM imaging_instance").fetchall()


def send_and_kill(node: Node, files: list[Path], kill_after: int | None, delay_s: float) -> set[Path]:
    """storescu on ``files``; SIGKILL the listener ``delay_s`` after the ``kill_after``-th
    acknowledgement (never, for None). Returns the files storescu was told were stored."""
    process = subprocess.Popen(
        [shutil.which("storescu"), "-v", "-nh", "-aet", "HOSPITAL_PACS", "-aec", AE_TITLE, "127.0.0.1",
         str(node.port), *[str(f) for f in files]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=node.env,
    )
    acknowledged: set[Path] = set()
    current: Path | None = None
    killed = threading.Event()
    assert process.stdout is not None
    for line in process.stdout:
        if "Sending file:" in line:
            current = Path(line.split("Sending file:", 1)[1].strip())
        elif "Received Store Response (Success)" in line and current is not None:
            acknowledged.add(current)
            if kill_after is not None and len(acknowledged) == kill_after and not killed.is_set():
                killed.set()
                threading.Timer(delay_s, node.kill).start()
    process.wait(60)
    if kill_after is not None:
        deadline = time.monotonic() + 10
        while node.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.process.poll() is not None, "the listener was not killed"
    return acknowledged


def assert_nothing_left_over(node: Node, acknowledged_uids: set[str]) -> None:
    incoming = node.var / "dicom-incoming"
    reserve = incoming / RESERVE_DIR
    slot_bytes = int(node.env.get("DICOM_JOURNAL_RESERVE_SLOT_BYTES", 576 * 1024))
    for path in reserve.iterdir():  # the reserve holds whole slots of zeros, nothing else
        data = path.read_bytes()
        assert path.suffix == ".slot" and 0 < len(data) <= slot_bytes and data.count(0) == len(data)
    assert [p for p in incoming.rglob("*") if p.is_file() and p.parent != reserve] == []  # no slot, written or not
    assert [p for p in incoming.iterdir() if p != reserve] == []  # no empty association folders
    rows = node.rows()
    uids = [uid for uid, _ in rows]
    assert len(uids) == len(set(uids))  # each instance once
    assert acknowledged_uids <= set(uids)  # every acknowledged one indexed
    media = node.var / "media"
    kept = {p.relative_to(media).as_posix() for p in (media / "imaging").rglob("*") if p.is_file()} \
        if (media / "imaging").exists() else set()
    assert kept == {name for _, name in rows}  # no file without its index entry, and the reverse


def test_sigkill_mid_transfer_then_restart_leaves_nothing_over_and_loses_nothing(tmp_path):
    files = write_ct_series(tmp_path / "ct", INSTANCES, patient_name="Kill^Test", birth_date="19800101")
    uid_of = {path: str(pydicom.dcmread(path).SOPInstanceUID) for path in files}
    node = Node(tmp_path / "var")
    rng = random.Random(17)
    acknowledged: set[str] = set()
    node.start()
    try:
        # Kill points: after the 1st acknowledgement at once, then later and later in the
        # study, each a little after an acknowledgement (while the next instance is on the
        # wire, being checked or being indexed). The first instances of each transfer go into
        # the journal reserve's slots (8: the first two kill points fall among them), the
        # others into empty slots.
        node.wait_reserve()
        for kill_after in (1, 6, 14, 25, 33):
            delay = rng.uniform(0.0, 0.03)
            done = send_and_kill(node, files, kill_after, delay)
            acknowledged |= {uid_of[p] for p in done}
            node.start()  # reconciles what the killed one left, then listens
            node.wait_reserve()  # refilled once idle (and what it had kept, kept whole)
            assert_nothing_left_over(node, acknowledged)
        done = send_and_kill(node, files, None, 0.0)
        assert done == set(files)
        node.stop()
        assert_nothing_left_over(node, set(uid_of.values()))
        assert len(node.rows()) == INSTANCES
    finally:
        node.stop()
    log = (node.var / "listener.log").read_text()
    # The kills did leave work behind (acknowledged instances not yet indexed), put right at start.
    assert "left by an earlier listener:" in log
    assert "Kill^Test" not in log and all(uid not in log for uid in uid_of.values())
