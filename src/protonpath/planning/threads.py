"""How many threads the optimiser's products use: the configured number, but no more than the
CPUs that other processes leave free when an optimisation starts.

The optimiser runs hundreds of short parallel products (0.3-2 ms each on the bench phantoms),
and a thread that is not running when a product starts delays it. OpenMP's default (libgomp:
each thread spins a while after a parallel loop, then sleeps) keeps the second thread ready and
was the fastest on a quiet 2-core machine (box phantom: 0.19-0.20 s against 0.31-0.32 s with
``OMP_WAIT_POLICY=passive``, whose threads sleep at once and were woken too late to take their
half: the same time as one thread). But with another process busy on one of the two cores, the
spinning thread took the main thread's core: 0.69 s against 0.33-0.35 s with one thread. So
the optimiser keeps OpenMP's default and, when it starts, counts the threads of other
processes that are running (:func:`others_running`); with fewer free CPUs than configured
threads it runs on as many threads as there are free CPUs (at least one), for that
optimisation only.

Pure Python reading Linux's ``/proc`` (no Django, no I/O but that): where ``/proc`` cannot be
read the configured number is used.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numba

#: Looks at the running threads before deciding, and the pause between two: a process that
#: runs in one look only (a short command) does not take a thread from the optimisation.
LOOKS = 3
LOOK_PAUSE_S = 0.001


def fitting_threads(configured: int, cpus: int, running_elsewhere: int | None) -> int:
    """Threads for a parallel computation: ``configured``, at most the CPUs that
    ``running_elsewhere`` threads of other processes leave free, at least one. Unknown
    (``None``) leaves ``configured``."""
    if running_elsewhere is None:
        return max(1, configured)
    return max(1, min(configured, cpus - running_elsewhere))


def _running_now(proc: Path) -> int | None:
    """Threads running or ready to run on the machine now (``/proc/loadavg``'s fourth field,
    ``running/total``), None where unreadable."""
    try:
        return int((proc / "loadavg").read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None


def _own_running(proc: Path) -> int | None:
    """Threads of this process in state R (running or ready): the thread reading, and any
    OpenMP thread still spinning after the last parallel loop."""
    count = 0
    try:
        tasks = list((proc / "self" / "task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        # the state follows the command name, in brackets that may contain spaces
        state = stat[stat.rfind(")") + 2 : stat.rfind(")") + 3]
        count += state == "R"
    return count


def others_running(proc: Path = Path("/proc"), looks: int = LOOKS, pause_s: float = LOOK_PAUSE_S) -> int | None:
    """Threads of other processes running or ready to run, the fewest seen in ``looks`` looks
    ``pause_s`` apart; None where ``/proc`` does not say."""
    fewest: int | None = None
    for look in range(looks):
        if look:
            time.sleep(pause_s)
        everyone, own = _running_now(proc), _own_running(proc)
        if everyone is None or own is None:
            return None
        elsewhere = max(0, everyone - own)
        fewest = elsewhere if fewest is None else min(fewest, elsewhere)
    return fewest


def cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_state = threading.local()  # numba's thread count is per calling thread too


def work_parts() -> int:
    """How many parts the products split their work into: the configured threads inside
    :func:`fitted_threads`, numba's threads elsewhere. Each part sums on its own and the parts
    are added in order, so a result does not depend on how many threads ran the parts: an
    optimisation gives the same weights to the last bit on a busy machine as on a quiet one."""
    configured = getattr(_state, "configured", None)
    return numba.get_num_threads() if configured is None else configured


@contextmanager
def fitted_threads(configured: int | None = None) -> Iterator[int]:
    """numba's threads set to :func:`fitting_threads` for the block (``configured``: numba's
    current number by default), restored after; yields the number used. Blocks nest (the inner
    one keeps the outer one's parts)."""
    before = numba.get_num_threads()
    outer = getattr(_state, "configured", None)
    wanted = max(1, before if configured is None else configured)
    count = fitting_threads(wanted, cpus(), others_running()) if wanted > 1 else 1
    count = min(count, numba.config.NUMBA_NUM_THREADS)
    _state.configured = wanted if outer is None else outer
    numba.set_num_threads(count)
    try:
        yield count
    finally:
        numba.set_num_threads(before)
        _state.configured = outer
