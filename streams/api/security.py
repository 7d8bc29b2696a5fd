"""API keys (hashed at rest, compared in constant time) and rate limits per key or client IP.

``EVTWIN_API_KEYS`` holds ``sha256:<hex>`` digests of the keys, never the keys: a request's key is
hashed and compared with each digest with :func:`hmac.compare_digest`. Rate limits are token
buckets per key (or client IP when a request carries no key); over a limit the API answers 429
with ``Retry-After`` in whole seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time

PREFIX = "sha256:"


class KeyConfigError(ValueError):
    """An ``EVTWIN_API_KEYS`` entry that is not ``sha256:<64 hex digits>``."""


def hash_key(key: str) -> str:
    """The ``sha256:<hex>`` digest of an API key, as ``EVTWIN_API_KEYS`` holds it."""
    return PREFIX + hashlib.sha256(key.encode()).hexdigest()


def parse_key_hashes(value: str | None) -> list[bytes]:
    """The digests of ``EVTWIN_API_KEYS`` (comma-separated ``sha256:<hex>``).

    Raises:
        KeyConfigError: an entry that is not a SHA-256 digest (a plain key is refused, so none
            is ever kept in the configuration).
    """
    out = []
    for entry in (value or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        digest = entry[len(PREFIX):] if entry.startswith(PREFIX) else ""
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise KeyConfigError(
                "EVTWIN_API_KEYS holds an entry that is not sha256:<64 hex digits>; store the "
                "digest of a key (`evtwin api hash-key KEY`), never the key")
        out.append(raw)
    return out


class KeyChecker:
    """Checks a presented key against the configured digests in constant time."""

    def __init__(self, digests: list[bytes]) -> None:
        self.digests = digests

    def check(self, key: str | None) -> bool:
        if not key:
            return False
        presented = hashlib.sha256(key.encode()).digest()
        ok = False
        for digest in self.digests:  # no early exit: the time does not say which one matched
            ok |= hmac.compare_digest(presented, digest)
        return ok


class RateLimiter:
    """Token buckets: ``rate`` per second per identity, bursts up to ``burst``.

    Args:
        rate: Tokens added per second (0 = no limit).
        burst: Bucket size.
        max_identities: Buckets kept; the oldest are forgotten beyond it.
    """

    def __init__(self, rate: float, burst: float, max_identities: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_identities = max_identities
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, identity: str) -> float:
        """Take one token; return 0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(identity, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[identity] = (tokens - 1.0, now)
                self._forget()
                return 0.0
            self._buckets[identity] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget(self) -> None:
        if len(self._buckets) > self.max_identities:
            for key in list(self._buckets)[: len(self._buckets) - self.max_identities]:
                del self._buckets[key]


def retry_after(seconds: float) -> str:
    """``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


__all__ = ["KeyChecker", "KeyConfigError", "RateLimiter", "hash_key", "parse_key_hashes",
           "retry_after"]
