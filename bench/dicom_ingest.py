"""Benchmark: instances per second received over C-STORE, protonpath's listener against storescp.

Both receivers run on this machine in the same run and receive the same generated study from
dcmtk's storescu over loopback: a CT series of real 512x512 slices (the dicompyler-core example
slice fetched by scripts/setup.d/30-dicom-testdata.sh, or pydicom's CT_small.dcm if it is absent),
given new UIDs and positions. Each receiver gets several rounds; the median round counts.

Prints instances per second for storescp and for protonpath, and their ratio (aim: >= 0.5).

Usage::

    PYTHONPATH=src .venv/bin/python bench/dicom_ingest.py [--instances 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from protonpath.imaging.scp import DicomListener, ListenerSettings, ReceivedInstance

REPO = Path(__file__).resolve().parents[1]
REAL_CT = REPO / ".cache" / "dicom-testdata" / "dicompyler-core" / "example_data" / "ct.0.dcm"
SMALL_CT = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"


def generate_study(dest: Path, count: int) -> Path:
    """Write ``count`` CT instances of one series derived from a real slice."""
    source = REAL_CT if REAL_CT.exists() else SMALL_CT
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    dest.mkdir(parents=True)
    for index in range(count):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [x, y, z + 2.0 * index]
        ds.InstanceNumber = index + 1
        ds.save_as(dest / f"CT{index:05d}.dcm", enforce_file_format=False)
    return source


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


#: Debian's dcmtk leaves Nagle's algorithm on unless TCP_NODELAY=1 is set, which costs storescp
#: a delayed-ACK wait (about 40 ms) per instance; both peers get it so storescp is at its best.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def send(study: Path, port: int, called_ae: str) -> float:
    """Run storescu on the whole study; return its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(
        ["storescu", "-aec", called_ae, "-aet", "BENCH", "+sd", "127.0.0.1", str(port), str(study)],
        check=True,
        capture_output=True,
        env=DCMTK_ENV,
    )
    return time.perf_counter() - start


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".part"))


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def round_storescp(study: Path, count: int, work: Path) -> tuple[float, float]:
    """Instances per second, and CPU seconds of storescp and storescu together."""
    out = work / "storescp"
    out.mkdir()
    port = free_port()
    cpu_before = children_cpu_s()
    server = subprocess.Popen(["storescp", "-aet", "STORESCP", "-od", str(out), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=DCMTK_ENV)
    try:
        wait_for_port(port)
        seconds = send(study, port, "STORESCP")
    finally:
        server.terminate()
        server.wait()
    cpu = children_cpu_s() - cpu_before
    received = count_files(out)
    if received != count:
        raise RuntimeError(f"storescp stored {received} of {count} instances")
    shutil.rmtree(out)
    return count / seconds, cpu


def round_protonpath(study: Path, count: int, work: Path) -> tuple[float, float]:
    """Instances per second, and CPU seconds of the listener and storescu together."""
    out = work / "protonpath"
    received: list[ReceivedInstance] = []
    lock = threading.Lock()

    def sink(instance: ReceivedInstance) -> None:
        with lock:
            received.append(instance)

    settings = ListenerSettings(incoming_dir=out, ae_title="PROTONPATH", host="127.0.0.1", port=0)
    cpu_before = children_cpu_s() + own_cpu_s()
    with DicomListener(settings, on_instance=sink) as listener:
        seconds = send(study, listener.port, "PROTONPATH")
    cpu = children_cpu_s() + own_cpu_s() - cpu_before
    if len(received) != count or count_files(out) != count:
        raise RuntimeError(f"protonpath stored {len(received)} of {count} instances")
    shutil.rmtree(out)
    return count / seconds, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    if shutil.which("storescu") is None or shutil.which("storescp") is None:
        print("dcmtk's storescu and storescp are needed (apt-get install dcmtk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dicom-ingest-") as tmp:
        work = Path(tmp)
        source = generate_study(work / "study", args.instances)
        size_mb = sum(p.stat().st_size for p in (work / "study").iterdir()) / 1e6
        print(f"study: {args.instances} CT instances from {source.name}, {size_mb:.1f} MB")
        dcmtk, ours = [], []
        for _ in range(args.rounds):
            dcmtk.append(round_storescp(work / "study", args.instances, work))
            ours.append(round_protonpath(work / "study", args.instances, work))
        reference = statistics.median(rate for rate, _ in dcmtk)
        result = statistics.median(rate for rate, _ in ours)
    n = args.instances
    for label, rounds, rate in (("storescp (dcmtk):   ", dcmtk, reference), ("protonpath listener:", ours, result)):
        rates = ", ".join(f"{r:.0f}" for r, _ in rounds)
        cpu_ms = statistics.median(cpu for _, cpu in rounds) / n * 1000
        print(f"{label} {rate:8.1f} instances/s  (rounds: {rates}; CPU with storescu: {cpu_ms:.1f} ms/instance)")
    print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    ratio = result / reference
    print(f"ratio protonpath/storescp: {ratio:.2f} (aim >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
