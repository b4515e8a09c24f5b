"""Publishing a phase's records: an interruption unwinds the run, a shortfall fails it."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import BenchmarkError, traffic
from producer import PublishReport


def _publishing(monkeypatch: pytest.MonkeyPatch, **report: Any) -> None:
    """``traffic.send`` publishing with a producer that never connects, reporting ``report``."""
    monkeypatch.setattr(traffic, "create_producer", lambda _settings: object())
    result = PublishReport(topic="t", **report)
    monkeypatch.setattr(traffic, "publish", lambda *_args, **_kwargs: result)


def test_an_interrupted_publish_is_an_interruption_not_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # cli maps KeyboardInterrupt (Ctrl-C, or SIGTERM through cli._interrupt) to exit 130.
    _publishing(monkeypatch, sent=3, delivered=3, interrupted=True)

    with pytest.raises(KeyboardInterrupt):
        traffic.send("127.0.0.1:1", "t", [], count=10)


def test_records_not_all_delivered_fail_the_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    _publishing(monkeypatch, sent=10, delivered=9, failed=1)

    with pytest.raises(BenchmarkError, match="9 of 10 delivered"):
        traffic.send("127.0.0.1:1", "t", [], count=10)
