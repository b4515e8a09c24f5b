"""Is the worker consuming? Bookkeeping behind self-healing and ``/livez``.

A live process can still be useless: after a broker outage a consumer has been seen
to lose its partitions and never rejoin its group, while ``consume()`` kept returning
nothing and the process answered every health check. The loop therefore reports each
poll here, and while it consumes nothing the worker asks the brokers how far its
group is behind (``GroupProgress``). It is *suspect* when, for longer than ``limit_s``
with the cluster answering, the partitions it is responsible for (its assignment; all
of the input's when it has none) end past the group's committed offsets and those
offsets have not moved; and *stuck* once a read confirms that a record really waits
there (past a commit there may be only transaction markers or aborted records, which
no consumer will ever deliver or commit). A worker that has no partitions because its
peers own them all sees those peers commit, so it is never stuck for being spare.

Pure bookkeeping over an injected clock: the worker decides what to do about it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

PartitionKey = tuple[str, int]
"""(topic, partition)."""

_PROBES_PER_LIMIT: Final = 4
_MAX_PROBE_INTERVAL_S: Final = 5.0


@dataclass(frozen=True)
class PartitionProgress:
    """One input partition as the brokers see it for the group."""

    committed: int
    """The group's committed offset (the earliest available one when none is committed)."""
    end: int
    """The partition's end (high watermark): records, markers or aborted ones may lie
    between the two, which is why a suspicion is confirmed by a read."""


GroupProgress = Mapping[PartitionKey, PartitionProgress]
"""Every partition of the input topic; None in place of it means the cluster did not answer."""


@dataclass(frozen=True)
class _Baseline:
    at: float
    committed: dict[PartitionKey, int]


class Liveness:
    """Tracks polls and group progress; says when the worker is stuck and why.

    ``polled()`` is called by the loop after every ``consume()``; ``probe_due()`` says
    when it should ask the brokers for ``GroupProgress`` and pass it to ``probed()``;
    when that leaves a ``suspect``, the loop checks for a waiting record at those
    offsets and calls ``confirmed()``. ``healed()`` records a recovery attempt.
    ``problems()`` may be read from any thread.
    """

    def __init__(self, limit_s: float, clock: Callable[[], float]) -> None:
        self.limit_s = limit_s
        self._clock = clock
        self._probe_interval_s = min(_MAX_PROBE_INTERVAL_S, limit_s / _PROBES_PER_LIMIT)
        self._last_beat = self._last_poll = clock()
        self._last_probe: float | None = None
        self._baseline: _Baseline | None = None
        self._suspect: tuple[str, dict[PartitionKey, int]] | None = None
        self._stuck: str | None = None
        self._healing: str | None = None
        self.heals_without_progress = 0

    @property
    def seconds_since_beat(self) -> float:
        """Seconds since the loop last went round (a poll, or a wait for a model or Kafka)."""
        return self._clock() - self._last_beat

    @property
    def seconds_since_poll(self) -> float:
        """Seconds since ``consume()`` last returned (since start-up before the first)."""
        return self._clock() - self._last_poll

    @property
    def stuck(self) -> str | None:
        """Why the worker is stuck, or None."""
        return self._stuck

    @property
    def suspect(self) -> dict[PartitionKey, int] | None:
        """The committed offsets past which a record should be waiting, if suspect."""
        return None if self._suspect is None else self._suspect[1]

    def confirmed(self, record_waiting: bool) -> None:
        """Settle a suspicion: stuck if a record waits, else nothing is left to consume."""
        if self._suspect is None:
            return
        reason, _ = self._suspect
        self._suspect = None
        if record_waiting:
            self._stuck = reason
        else:
            self._progressed()

    def beat(self) -> None:
        """The loop went round without consuming (still waiting for a model or for Kafka)."""
        self._last_beat = self._clock()

    def polled(self, consumed: int) -> None:
        """``consume()`` returned ``consumed`` records."""
        self._last_beat = self._last_poll = self._clock()
        if consumed:
            self._progressed()

    def probe_due(self) -> bool:
        """Whether the loop, idle since its last records, should probe the group now."""
        return self._last_probe is None or (
            self._clock() - self._last_probe >= self._probe_interval_s
        )

    def probed(self, progress: GroupProgress | None, assignment: frozenset[PartitionKey]) -> None:
        """Judge a probe: ``progress`` of the input's partitions, None if the cluster is away."""
        now = self._last_probe = self._clock()
        if progress is None:
            self._baseline = None  # the limit counts from when the cluster answers again
            return
        responsible = assignment or frozenset(progress)
        mine = {key: p for key, p in progress.items() if key in responsible}
        behind = sum(max(0, p.end - p.committed) for p in mine.values())
        committed = {key: p.committed for key, p in mine.items()}
        if behind == 0:
            self._progressed()
            return
        baseline = self._baseline
        if baseline is None or baseline.committed != committed:
            if baseline is not None:
                self._progressed()  # the group committed since the last probe
            self._baseline = _Baseline(now, committed)
            return
        idle_s = now - baseline.at
        if idle_s > self.limit_s and self._stuck is None:
            owner = f"{len(assignment)} assigned partition(s)" if assignment else "no partitions"
            reason = (
                f"holding {owner} while {behind} input record(s) wait and the group has "
                f"committed nothing for {idle_s:.0f}s"
            )
            pending = {key: p.committed for key, p in mine.items() if p.end > p.committed}
            self._suspect = (reason, pending)

    def healed(self) -> None:
        """A recovery was attempted: judge afresh from now on.

        The worker stays not live until it makes progress: a replacement of its clients
        is an attempt, not a recovery, and ``/livez`` must not flip back to 200 on it.
        """
        self.heals_without_progress += 1
        self._healing = self._stuck
        self._stuck = self._suspect = None
        self._baseline = None
        self._last_probe = None

    def problems(self, loop_limit_s: float) -> list[str]:
        """Why the worker is not live: stuck, or its loop silent for ``loop_limit_s``."""
        reasons = []
        silent = self.seconds_since_beat
        if silent > loop_limit_s:
            reasons.append(f"the loop has not gone round for {silent:.0f}s")
        if stuck := self._stuck:
            reasons.append(f"not consuming: {stuck}")
        elif healing := self._healing:
            reasons.append(f"not consuming since the Kafka clients were replaced: {healing}")
        return reasons

    def _progressed(self) -> None:
        self._baseline = None
        self._stuck = self._suspect = self._healing = None
        self.heals_without_progress = 0
