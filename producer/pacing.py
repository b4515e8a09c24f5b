"""Rate limiting for publishing: a token bucket driven by an injectable clock and wait."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

# Burst capacity, as seconds of rate: enough to catch up after a coarse sleep (poll timeouts
# have millisecond granularity) without letting the long-run rate drift.
_BURST_SECONDS: Final = 0.05
# Refill arithmetic leaves a token at 0.9999999999…: waiting for the missing 1e-15 s would
# not move a float clock at all, so that counts as a whole token.
_TOKEN_TOLERANCE: Final = 1e-9


class TokenBucket:
    """Admits ``rate`` acquisitions per second on average, at most ``burst`` back to back.

    ``wait(seconds)`` is called while tokens refill; the publisher passes the producer's
    ``poll`` so delivery reports keep being served while it paces. ``clock`` is monotonic
    seconds; both are injected so tests control time.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float],
        wait: Callable[[float], object],
        burst: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self._rate = rate
        self._burst = burst if burst is not None else max(1.0, rate * _BURST_SECONDS)
        self._clock = clock
        self._wait = wait
        self._tokens = 1.0
        self._last = clock()

    def acquire(self) -> None:
        """Take one token, waiting until one is available."""
        while True:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1.0 - _TOKEN_TOLERANCE:
                self._tokens -= 1.0
                return
            self._wait((1.0 - self._tokens) / self._rate)
