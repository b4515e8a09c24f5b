"""Liveness rules: when an idle worker counts as stuck, and what counts as progress."""

from __future__ import annotations

import pytest

from consumer.liveness import GroupProgress, Liveness, PartitionProgress

_LIMIT_S = 20.0
_P0, _P1 = ("apps", 0), ("apps", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _progress(**offsets: tuple[int, int]) -> GroupProgress:
    keys = {"p0": _P0, "p1": _P1}
    return {
        keys[name]: PartitionProgress(committed, end) for name, (committed, end) in offsets.items()
    }


def _probe_every_5s(
    liveness: Liveness,
    clock: Clock,
    progress: GroupProgress | None,
    seconds: float,
    assignment: frozenset[tuple[str, int]] = frozenset(),
    *,
    record_waiting: bool = True,
) -> None:
    """Probe as the worker does, answering a suspicion with ``record_waiting``."""
    for _ in range(int(seconds // 5)):
        clock.now += 5
        assert liveness.probe_due()
        liveness.probed(progress, assignment)
        if liveness.suspect is not None:
            liveness.confirmed(record_waiting)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def liveness(clock: Clock) -> Liveness:
    return Liveness(_LIMIT_S, clock)


def test_records_waiting_with_no_commit_past_the_limit_is_stuck(
    liveness: Liveness, clock: Clock
) -> None:
    waiting = _progress(p0=(10, 50), p1=(0, 0))
    _probe_every_5s(liveness, clock, waiting, _LIMIT_S)
    assert liveness.stuck is None  # counted from the first answer (15 s ago): not yet past

    _probe_every_5s(liveness, clock, waiting, 10)

    assert liveness.stuck is not None
    assert "no partitions" in liveness.stuck
    assert "40 input record(s) wait" in liveness.stuck
    assert liveness.problems(loop_limit_s=600) == [f"not consuming: {liveness.stuck}"]


def test_a_suspicion_names_the_offsets_to_read_past(liveness: Liveness, clock: Clock) -> None:
    for _ in range(6):
        clock.now += 5
        liveness.probed(_progress(p0=(10, 50), p1=(7, 7)), frozenset())
    assert liveness.suspect == {_P0: 10}
    assert liveness.stuck is None  # not before a read confirms it
    assert liveness.problems(loop_limit_s=600) == []


def test_only_markers_or_aborted_records_past_the_commits_is_not_stuck(
    liveness: Liveness, clock: Clock
) -> None:
    # A transactional upstream leaves a commit marker (or an aborted tail) past the last
    # committed offset: the end is ahead, but no consumer will ever get a record there.
    _probe_every_5s(liveness, clock, _progress(p0=(10, 11)), 100, record_waiting=False)
    assert liveness.stuck is None
    assert liveness.suspect is None


def test_a_spare_member_whose_peers_commit_is_not_stuck(liveness: Liveness, clock: Clock) -> None:
    for committed in range(0, 100, 10):
        _probe_every_5s(liveness, clock, _progress(p0=(committed, committed + 30)), 5)
    assert liveness.stuck is None


def test_nothing_to_consume_is_not_stuck(liveness: Liveness, clock: Clock) -> None:
    _probe_every_5s(liveness, clock, _progress(p0=(50, 50), p1=(7, 7)), 100)
    assert liveness.stuck is None


def test_the_limit_counts_from_when_the_cluster_answers_again(
    liveness: Liveness, clock: Clock
) -> None:
    waiting = _progress(p0=(10, 50))
    _probe_every_5s(liveness, clock, waiting, 15)
    _probe_every_5s(liveness, clock, None, 30)  # the brokers are away
    _probe_every_5s(liveness, clock, waiting, 20)
    assert liveness.stuck is None
    _probe_every_5s(liveness, clock, waiting, 10)
    assert liveness.stuck is not None


def test_an_assigned_worker_is_judged_on_its_own_partitions(
    liveness: Liveness, clock: Clock
) -> None:
    mine = frozenset({_P0})
    # p1 belongs to a peer who keeps committing; p0 is this worker's and does not move.
    for step in range(6):
        progress = _progress(p0=(10, 50), p1=(step * 10, step * 10 + 5))
        _probe_every_5s(liveness, clock, progress, 5, assignment=mine)
    assert liveness.stuck is not None
    assert "1 assigned partition(s)" in liveness.stuck


def test_consuming_records_clears_stuck_and_the_heal_count(
    liveness: Liveness, clock: Clock
) -> None:
    _probe_every_5s(liveness, clock, _progress(p0=(10, 50)), 30)
    reason = liveness.stuck
    liveness.healed()
    assert liveness.stuck is None
    assert liveness.heals_without_progress == 1
    # An attempt is not a recovery: still not live until records are consumed.
    assert liveness.problems(loop_limit_s=600) == [
        f"not consuming since the Kafka clients were replaced: {reason}"
    ]
    _probe_every_5s(liveness, clock, _progress(p0=(10, 50)), 30)
    assert liveness.stuck is not None
    assert liveness.heals_without_progress == 1

    liveness.polled(consumed=3)

    assert liveness.stuck is None
    assert liveness.heals_without_progress == 0
    assert liveness.problems(loop_limit_s=600) == []


def test_probes_are_spaced(liveness: Liveness, clock: Clock) -> None:
    assert liveness.probe_due()
    liveness.probed(None, frozenset())
    clock.now += 1
    assert not liveness.probe_due()
    clock.now += 4
    assert liveness.probe_due()


def test_a_silent_loop_is_not_live_and_a_poll_makes_it_live(
    liveness: Liveness, clock: Clock
) -> None:
    clock.now += 31
    assert liveness.problems(loop_limit_s=30) == ["the loop has not gone round for 31s"]
    assert liveness.seconds_since_poll == 31
    liveness.polled(consumed=0)
    assert liveness.problems(loop_limit_s=30) == []
    assert liveness.seconds_since_poll == 0


def test_waiting_for_a_model_or_kafka_keeps_the_loop_live(liveness: Liveness, clock: Clock) -> None:
    for _ in range(10):
        clock.now += 10
        liveness.beat()
    assert liveness.problems(loop_limit_s=30) == []
    assert liveness.seconds_since_poll == 100  # but it has not polled
