"""Benchmark: the whole DICOM ingest over C-STORE, protonpath's listener against dcmtk's storescp.

Both receivers run on this machine in the same command and receive the same generated study from
dcmtk's storescu over loopback: a CT series of real 512x512 slices (the dicompyler-core example
slice fetched by scripts/setup.d/30-dicom-testdata.sh, or pydicom's CT_small.dcm if it is absent),
given new UIDs and positions, carrying the accession number and patient of a request.

storescp only writes files. protonpath's side is what ``manage.py dicom_listen`` does for users:
the listener of :func:`protonpath.imaging.ingest.build_listener` files every instance into the
storage, indexes it (study, series, instance rows) against a migrated Django database in a
temporary folder (SQLite, or ``--database-url``), routes it to the request by accession number
and patient identity, and once the association ends writes the transfer record, the audit trail
and the request's check report. A round ends when that report is written. Each receiver gets
several rounds (a new study each round, so nothing is a duplicate); the median round counts.

protonpath acknowledges an instance once its file and name are synced to disk (``DICOM_FSYNC``,
on by default: a power cut loses nothing acknowledged); storescp syncs nothing. ``--no-fsync``
runs the listener as storescp does (files complete in the page cache, safe from a killed
process only), the like-for-like comparison; the default times what ``dicom_listen`` does.

Before each round the page cache is written out (``os.sync``): the study just generated (the
sender's files, which on a real network lie on the sender's disk) and the last round's files
would otherwise be flushed by the kernel under the next receiver, slowing storescp's rounds
most (1,000-1,250 instances/s against 1,450-1,600 on the Intel Xeon of 2026-12-04).

Prints instances per second for storescp and for protonpath, and their ratio (aim: >= 0.5).
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for both sides (the script re-runs itself
without them). ``--profile`` runs every thread of the listener under cProfile (its own
overhead slows the rounds) and prints where their time went (``BENCH_PROFILE_SORT``, default
``tottime``, and ``BENCH_PROFILE_LINES``, default 20, choose the listing's order and length).

Usage::

    PYTHONPATH=src .venv/bin/python bench/dicom_ingest.py [--instances 300] [--rounds 3] [--profile]
        [--no-fsync] [--database-url postgresql://user@host/empty_database]
"""

from __future__ import annotations

import argparse
import datetime
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

REPO = Path(__file__).resolve().parents[1]
REAL_CT = REPO / ".cache" / "dicom-testdata" / "dicompyler-core" / "example_data" / "ct.0.dcm"
OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
PATIENT = {"first_name": "Amina", "last_name": "El Idrissi", "birth_date": datetime.date(1979, 3, 14)}


def generate_study(dest: Path, count: int, accession_number: str) -> Path:
    """Write ``count`` CT instances of one new series derived from a real slice."""
    import pydicom
    from pydicom.uid import generate_uid

    small = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    source = REAL_CT if REAL_CT.exists() else small
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.AccessionNumber = accession_number
    ds.PatientName = f"{PATIENT['last_name']}^{PATIENT['first_name']}"
    ds.PatientBirthDate = PATIENT["birth_date"].strftime("%Y%m%d")
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
def dcmtk_env() -> dict[str, str]:
    return {**os.environ, "TCP_NODELAY": "1"}


def send(study: Path, port: int, called_ae: str) -> float:
    """Run storescu on the whole study; return its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(
        ["storescu", "-aec", called_ae, "-aet", "BENCH", "+sd", "127.0.0.1", str(port), str(study)],
        check=True,
        capture_output=True,
        env=dcmtk_env(),
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
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dcmtk_env())
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


def set_up_django(work: Path, database_url: str | None, fsync: bool = True, reserve: int | None = None) -> None:
    """Settings pointing at ``work`` (database, media, incoming folder), migrated."""
    os.environ["PROTONPATH_VAR_DIR"] = str(work / "var")
    os.environ["DICOM_FSYNC"] = "1" if fsync else "0"
    if reserve is not None:
        os.environ["DICOM_JOURNAL_RESERVE"] = str(reserve)
    os.environ.setdefault("SECRET_KEY", "bench-only-" + os.urandom(24).hex())
    os.environ["DATABASE_URL"] = database_url or f"sqlite:///{work / 'var' / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "protonpath.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--no-input", verbosity=0)


def make_request():
    """A submitted request by a referring doctor for the patient the study names."""
    from protonpath.accounts.models import Role, User
    from protonpath.referrals import services

    doctor = User.objects.create_user("bench-doctor", "doctor@example.org", "bench-password-2026",
                                      role=Role.REFERRING_DOCTOR)
    patient = {**PATIENT, "sex": "F", "birth_place": "Casablanca", "nationality": "MA", "phone": "+212 600 000 000",
               "email": "patient@example.org", "address": "Casablanca", "country_of_residence": "MA"}
    request = {"request_type": "treatment", "reason": "Benchmark.", "covered_by_french_insurance": False,
               "addressee_name": "Dr B", "addressee_institution": "Centre", "addressee_phone": "+212 500 000 000",
               "addressee_email": "b@example.org", "addressee_address": "Casablanca", "pathology_name": "Chordoma",
               "pathology_location": "Clivus", "had_surgery": False, "had_chemotherapy": False,
               "had_radiotherapy": False}
    return services.create_request(actor=doctor, patient_data=patient, request_data=request)


class ThreadProfiles:
    """cProfile in every thread started from now on: cProfile sees only the thread that enables
    it, and the listener works in its server, association and index-writer threads. Created
    before the listener starts, so the rounds are all it profiles (setup runs in the main
    thread); :meth:`print` merges the profiles per kind of thread."""

    def __init__(self) -> None:
        import cProfile

        self.profiles: list[tuple[str, cProfile.Profile]] = []
        run = threading.Thread.run
        profiles = self.profiles

        def profiled_run(thread: threading.Thread) -> None:
            profile = cProfile.Profile()
            profiles.append((thread.name, profile))
            profile.enable()
            try:
                run(thread)
            finally:
                profile.disable()

        threading.Thread.run = profiled_run  # type: ignore[method-assign]

    def print(self) -> None:
        import io
        import pstats

        kinds: dict[str, list] = {}
        for name, profile in self.profiles:
            kinds.setdefault(name.split("@")[0].split(" ")[0].rstrip("-0123456789") or "thread", []).append(profile)
        for kind, profiles in kinds.items():
            out = io.StringIO()
            stats = pstats.Stats(profiles[0], stream=out)
            for profile in profiles[1:]:
                stats.add(profile)
            stats.sort_stats(os.environ.get("BENCH_PROFILE_SORT", "tottime")).print_stats(int(os.environ.get("BENCH_PROFILE_LINES", "20")))
            print(f"=== {kind} ({len(profiles)} thread(s))")
            print(out.getvalue())


def round_protonpath(study: Path, count: int, work: Path, treatment_request, listener,
                     done: threading.Event) -> tuple[float, float]:
    """Instances per second of the whole ingest (until the check report is written), and CPU
    seconds of the listener and storescu together."""
    from protonpath.imaging.models import CheckReport, Instance, Transfer
    from protonpath.imaging.reserve import RESERVE_DIR

    done.clear()
    before = Instance.objects.count()
    cpu_before = children_cpu_s() + own_cpu_s()
    start = time.perf_counter()
    send(study, listener.port, listener.settings.ae_title)
    if not done.wait(120):
        raise RuntimeError("the listener never finished the association")
    seconds = time.perf_counter() - start
    cpu = children_cpu_s() + own_cpu_s() - cpu_before
    stored = Instance.objects.count() - before
    transfer = Transfer.objects.order_by("-pk").first()
    report = CheckReport.objects.get(treatment_request=treatment_request)
    if stored != count or transfer.stored != count or report.instance_count != before + count:
        raise RuntimeError(f"protonpath indexed {stored} of {count} instances")
    reserve = Path(listener.settings.incoming_dir) / RESERVE_DIR
    leftovers = [p for p in Path(listener.settings.incoming_dir).rglob("*") if p.is_file() and p.parent != reserve]
    if leftovers:
        raise RuntimeError(f"{len(leftovers)} file(s) left in the incoming folder")
    return count / seconds, cpu


def run(args: argparse.Namespace) -> int:
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="dicom-ingest-") as tmp:
        work = Path(tmp)
        set_up_django(work, args.database_url, fsync=args.fsync, reserve=args.journal_reserve)
        from django.db import connection

        from protonpath.imaging.ingest import build_listener

        treatment_request = make_request()
        listener = build_listener(host="127.0.0.1", port=0, incoming_dir=work / "incoming")
        done = threading.Event()
        end = listener._on_association_end

        def on_end(summary):  # the round ends once the listener has closed the transfer
            try:
                end(summary)
            finally:
                done.set()

        listener._on_association_end = on_end
        profiler = ThreadProfiles() if args.profile else None
        listener.start()
        try:
            dcmtk, ours = [], []
            for number in range(args.rounds):
                study = work / f"study{number}"
                source = generate_study(study, args.instances, treatment_request.accession_number)
                if number == 0:
                    size_mb = sum(p.stat().st_size for p in study.iterdir()) / 1e6
                    reserve = listener.reserve
                    print(f"study: {args.instances} CT instances from {source.name}, {size_mb:.1f} MB per round; "
                          f"database: {connection.vendor}; listener fsync: {listener.settings.fsync}; journal reserve: "
                          f"{reserve.count if reserve else 0} slot(s) of {listener.settings.journal_reserve_slot_bytes} bytes")
                # The listener's reserve is filled while it is idle (after the last round, at its
                # start): before storescp's round, so that neither receiver shares the disk with it.
                if listener.reserve is not None and not listener.reserve.wait_full(120):
                    print(f"journal reserve: {listener.reserve.available} of {listener.reserve.count} slot(s) "
                          "(the disk keeps too little free space for more)")
                os.sync()
                dcmtk.append(round_storescp(study, args.instances, work))
                os.sync()
                ours.append(round_protonpath(study, args.instances, work, treatment_request, listener, done))
                shutil.rmtree(study)
        finally:
            listener.stop()
            connection.close()
    if profiler is not None:
        profiler.print()
    reference = statistics.median(rate for rate, _ in dcmtk)
    result = statistics.median(rate for rate, _ in ours)
    n = args.instances
    for label, rounds, rate in (("storescp (dcmtk):       ", dcmtk, reference),
                                ("protonpath whole ingest:", ours, result)):
        rates = ", ".join(f"{r:.0f}" for r, _ in rounds)
        cpu_ms = statistics.median(cpu for _, cpu in rounds) / n * 1000
        print(f"{label} {rate:8.1f} instances/s  (rounds: {rates}; CPU with storescu: {cpu_ms:.1f} ms/instance)")
    print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    ratio = result / reference
    print(f"ratio protonpath/storescp: {ratio:.2f} (aim >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None,
                        help="an empty database to migrate and use (default: SQLite in a temporary folder)")
    parser.add_argument("--profile", action="store_true", help="cProfile the listener's threads")
    parser.add_argument("--journal-reserve", type=int, default=None, metavar="SLOTS",
                        help="slot files of zeros the journal keeps, made while the listener is idle "
                             "(DICOM_JOURNAL_RESERVE; default: the settings', 512; 0: none)")
    parser.add_argument("--no-fsync", dest="fsync", action="store_false",
                        help="acknowledge without syncing to disk, as storescp does (DICOM_FSYNC=0)")
    args = parser.parse_args(argv)
    if any(name in os.environ for name in OPENBLAS_VARIABLES):
        env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARIABLES}
        script = [sys.executable, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv)]
        return subprocess.run(script, env=env).returncode
    if shutil.which("storescu") is None or shutil.which("storescp") is None:
        print("dcmtk's storescu and storescp are needed (apt-get install dcmtk)", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
