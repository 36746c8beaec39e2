"""Sign-in throttling: failed sign-ins counted per account name and per client address.

After ``SIGNIN_MAX_FAILURES`` failures for one account name, or ``SIGNIN_MAX_FAILURES_PER_IP``
from one address, within ``SIGNIN_WINDOW_S`` seconds, sign-ins for that name (or from that
address) are refused for ``SIGNIN_LOCKOUT_S`` seconds, whatever the password. Names that match no
account are counted like the others, so a refusal says nothing about whether an account exists.

The counters live in Django's cache (``CACHES["default"]``): local memory by default, which
counts per process; set a shared cache (Redis, Memcached) when several processes serve the
site. Keys are keyed hashes (HMAC with ``SECRET_KEY``) of the name or address, so neither a user
name nor an address appears in the cache.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils.crypto import salted_hmac

logger = logging.getLogger("protonpath.signin")

_PREFIX = "protonpath:signin"


@dataclass(frozen=True)
class Refusal:
    """Sign-in is refused for ``seconds`` more, because of the account name or the address."""

    subject: str  # "account" or "address"
    seconds: int

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.seconds / 60))


def client_ip(request) -> str | None:
    """The client's address, as the audit trail records it (the connection's peer)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def _normalise(username: str) -> str:
    return username.strip().casefold()


def _key(subject: str, value: str) -> str:
    digest = salted_hmac("protonpath.accounts.throttle", f"{subject}:{value}", algorithm="sha256")
    return f"{_PREFIX}:{subject}:{digest.hexdigest()}"


def _subjects(username: str | None, ip: str | None) -> list[tuple[str, str, int]]:
    """(subject, cache key, limit) for each counter that applies; a limit of 0 turns one off."""
    subjects = []
    if username and _normalise(username) and settings.SIGNIN_MAX_FAILURES > 0:
        subjects.append(("account", _key("account", _normalise(username)), settings.SIGNIN_MAX_FAILURES))
    if ip and settings.SIGNIN_MAX_FAILURES_PER_IP > 0:
        subjects.append(("address", _key("address", ip), settings.SIGNIN_MAX_FAILURES_PER_IP))
    return subjects


def refusal(username: str | None, ip: str | None) -> Refusal | None:
    """Whether a sign-in with this name from this address must be refused now, and for how long."""
    subjects = _subjects(username, ip)
    if not subjects:
        return None
    locks = cache.get_many([f"{key}:lock" for _, key, _ in subjects])
    now = time.time()
    longest: Refusal | None = None
    for subject, key, _limit in subjects:
        until = locks.get(f"{key}:lock")
        if until is None:
            continue
        seconds = max(1, math.ceil(float(until) - now))
        if longest is None or seconds > longest.seconds:
            longest = Refusal(subject=subject, seconds=seconds)
    return longest


def register_failure(username: str | None, ip: str | None) -> None:
    """Count one failed sign-in; lock the name or address once it reaches its limit."""
    window = settings.SIGNIN_WINDOW_S
    lockout = settings.SIGNIN_LOCKOUT_S
    for subject, key, limit in _subjects(username, ip):
        counter = f"{key}:n"
        # The window starts at the first failure: add() sets the expiry, incr() keeps it (atomic
        # on Redis and Memcached; Django's generic incr, used by the database and file caches,
        # is a get-and-set that restarts the expiry at the cache's default timeout).
        cache.add(counter, 0, timeout=window)
        try:
            failures = cache.incr(counter)
        except ValueError:  # expired between add() and incr()
            cache.add(counter, 1, timeout=window)
            failures = 1
        if failures >= limit:
            cache.set(f"{key}:lock", time.time() + lockout, timeout=lockout)
            cache.delete(counter)
            logger.warning("sign-in locked subject=%s failures=%d lockout_s=%d", subject, failures, lockout)


def clear_account(username: str | None) -> None:
    """Forget an account name's failures and lock (after a successful sign-in or password reset).

    The address's counter is kept: one valid account must not let an address try other names.
    """
    if not username or not _normalise(username):
        return
    key = _key("account", _normalise(username))
    cache.delete_many([f"{key}:n", f"{key}:lock"])
