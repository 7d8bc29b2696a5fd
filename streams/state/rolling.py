"""Rolling accuracy figures: pairs (:class:`streams.state.accuracy.Pair`) added to buckets of event
time per battery and fleet-wide, and the figures of the last window of buckets.

The figures are sums (pairs, absolute RUL error, pairs inside the band, detections and their
delays; for the failure probability the pairs with both halves, the sum of the probabilities, the
positive labels and the squared errors), so buckets add up exactly: a window's MAE is its error
sum over its pair count, never a mean of means. ``ev_accuracy`` stores the same sums per bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.state.accuracy import Pair

FLEET = "*"
"""Key of the fleet-wide figures (``battery_id`` of the fleet rows of ``ev_accuracy``); never a
battery id, which starts with a letter or digit."""


@dataclass(slots=True)
class Sums:
    """Additive figures of a set of pairs (one bucket, or a window of buckets)."""

    pairs: int = 0
    abs_error: float = 0.0
    in_band: int = 0
    detections: int = 0
    delay_s: float = 0.0
    failure_pairs: int = 0
    failure_probability: float = 0.0
    failure_observed: int = 0
    failure_sq_error: float = 0.0

    def add(self, pair: Pair) -> None:
        self.pairs += 1
        self.abs_error += pair.abs_error
        self.in_band += pair.in_band
        if pair.detection_delay_s is not None:
            self.detections += 1
            self.delay_s += pair.detection_delay_s
        if pair.failure_known:
            y = 1.0 if pair.failure_within_horizon else 0.0
            self.failure_pairs += 1
            self.failure_probability += pair.failure_probability
            self.failure_observed += int(y)
            self.failure_sq_error += (pair.failure_probability - y) ** 2

    def merge(self, other: Sums) -> None:
        self.pairs += other.pairs
        self.abs_error += other.abs_error
        self.in_band += other.in_band
        self.detections += other.detections
        self.delay_s += other.delay_s
        self.failure_pairs += other.failure_pairs
        self.failure_probability += other.failure_probability
        self.failure_observed += other.failure_observed
        self.failure_sq_error += other.failure_sq_error

    @property
    def mae(self) -> float | None:
        """Mean absolute RUL error, EFC; ``None`` without pairs."""
        return _per(self.abs_error, self.pairs)

    @property
    def coverage(self) -> float | None:
        """Fraction (0-1) of true RULs inside the P10-P90 band; ``None`` without pairs."""
        return _per(self.in_band, self.pairs)

    @property
    def delay_mean_s(self) -> float | None:
        """Mean onset-to-flag delay of the detections, s; ``None`` without detections."""
        return _per(self.delay_s, self.detections)

    @property
    def failure_mean_probability(self) -> float | None:
        """Mean predicted failure probability (0-1); ``None`` without such pairs."""
        return _per(self.failure_probability, self.failure_pairs)

    @property
    def failure_observed_rate(self) -> float | None:
        """Share (0-1) of the pairs whose truth says failure within the horizon."""
        return _per(self.failure_observed, self.failure_pairs)

    @property
    def failure_brier(self) -> float | None:
        """Mean squared error of the failure probability against the label (0-1)."""
        return _per(self.failure_sq_error, self.failure_pairs)

    @property
    def failure_baseline_brier(self) -> float | None:
        """The Brier score of always predicting the observed rate: ``rate * (1 - rate)``."""
        rate = self.failure_observed_rate
        return None if rate is None else rate * (1.0 - rate)


def _per(total: float, count: int) -> float | None:
    return total / count if count else None


def bucket_of(time_ms: int, bucket_ms: int) -> int:
    """Start of the bucket of ``time_ms``, ms (buckets start at multiples of ``bucket_ms``)."""
    return time_ms - time_ms % bucket_ms


class Rolling:
    """Pairs in buckets of event time per battery and fleet-wide; the figures of the window.

    The window is the ``window_ms // bucket_ms`` buckets up to and including the newest bucket any
    pair fell into (the fleet's event time), the same definition the API applies to ``ev_accuracy``.
    """

    def __init__(self, bucket_ms: int, window_ms: int) -> None:
        self.bucket_ms = bucket_ms
        self.window_ms = window_ms
        self.buckets: dict[str, dict[int, Sums]] = {}
        self.newest = -1

    def add(self, pair: Pair) -> None:
        b = bucket_of(pair.time_ms, self.bucket_ms)
        for key in (pair.battery_id, FLEET):
            self.buckets.setdefault(key, {}).setdefault(b, Sums()).add(pair)
        self.newest = max(self.newest, b)

    def load(self, key: str, bucket: int, sums: Sums) -> None:
        """Seed a bucket (from the table, at start-up)."""
        self.buckets.setdefault(key, {})[bucket] = sums
        self.newest = max(self.newest, bucket)

    def window(self, key: str) -> Sums:
        """The figures of ``key`` (a battery or :data:`FLEET`) over the window."""
        out = Sums()
        start = self.newest - self.window_ms
        for b, sums in self.buckets.get(key, {}).items():
            if b > start:
                out.merge(sums)
        return out

    def expire(self) -> list[str]:
        """Drop buckets before the window; return the keys left without any."""
        start = self.newest - self.window_ms
        gone = []
        for key, buckets in self.buckets.items():
            for b in [b for b in buckets if b <= start]:
                del buckets[b]
            if not buckets:
                gone.append(key)
        for key in gone:
            del self.buckets[key]
        return gone


__all__ = ["FLEET", "Rolling", "Sums", "bucket_of"]
