"""The monitor's pure parts: PSI, crossings, live performance and fairness, outcome decoding,
the outbox."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from consumer.decoding import decode
from consumer.records import OutboundRecord
from contracts.alert import AlertKind
from contracts.outcome import LoanOutcome
from contracts.profile import Histogram
from contracts.topics import DeadLetterReason
from monitor.alerts import AUC_SUBJECT, auc_crossing, fairness_crossings, psi_crossings
from monitor.drift import histogram_psi, psi
from monitor.fairness import LiveFairness, live_fairness
from monitor.measures import Drift, VersionAuc
from monitor.outbox import from_outbox, to_outbox
from monitor.performance import live_performance
from monitor.report import fairness_line
from monitor.settings import Settings
from monitor.store import PERSONAL_COLUMNS
from training.evaluation import CostMatrix, expected_cost
from training.selection import FAIRNESS_GATE_METRICS

_NOW = datetime(2026, 11, 27, tzinfo=UTC)
_SETTINGS = Settings(metrics_port=0, min_joined_rows=500)


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift() -> None:
    reference = [100, 200, 300, 400]
    assert psi(reference, [10, 20, 30, 40]) == pytest.approx(0.0)
    mild = psi(reference, [120, 200, 300, 380])
    strong = psi(reference, [400, 300, 200, 100])
    assert 0 < mild < 0.1 < 0.2 < strong


def test_psi_matches_its_textbook_formula_and_tolerates_an_empty_bin() -> None:
    ref, live = np.array([0.5, 0.5]), np.array([0.8, 0.2])
    expected = float(np.sum((live - ref) * np.log(live / ref)))
    assert psi([50, 50], [80, 20]) == pytest.approx(expected)
    assert math.isfinite(psi([50, 50, 0], [40, 40, 20]))
    assert psi([1, 2], [0, 0]) == 0.0  # nothing live yet


def test_psi_refuses_counts_over_different_bins() -> None:
    with pytest.raises(ValueError, match="bins differ"):
        psi([1, 2, 3], [1, 2])


def test_live_values_are_counted_in_the_training_bins() -> None:
    reference = Histogram(edges=[10.0, 20.0], counts=[100, 100, 100])
    same = np.concatenate([np.full(50, 5.0), np.full(50, 15.0), np.full(50, 25.0)])
    assert histogram_psi(reference, same) == pytest.approx(0.0)
    assert histogram_psi(reference, np.full(90, 99.0)) > 0.2  # all above the training range


def test_a_crossing_alerts_once_and_rearms_only_once_stable_again() -> None:
    series = [0.3, 0.5, 0.15, 0.25, 0.1, 0.21]  # straddles the limit, then is stable again

    raised, state = [], {}
    for age in series:
        drift = Drift({"age": age, "score": 0.05}, rows=500, model_run_id="r")
        alerts, state = psi_crossings(drift, state, _SETTINGS, _NOW)
        assert all(a.kind is AlertKind.PSI for a in alerts)
        raised.append([(a.subject, a.value) for a in alerts])

    assert raised == [[("age", 0.3)], [], [], [], [], [("age", 0.21)]]
    assert state == {"age": True, "score": False}


def test_live_performance_is_sklearn_s_on_the_same_rows() -> None:
    rng = np.random.default_rng(4)
    scores = rng.uniform(size=400)
    defaulted = rng.uniform(size=400) < scores
    thresholds = np.full(400, 0.3)
    costs = CostMatrix(false_negative=5, false_positive=1)

    measured = live_performance(defaulted, scores, thresholds, costs)

    assert measured.rows == 400
    assert measured.defaults == int(defaulted.sum())
    assert measured.roc_auc == pytest.approx(roc_auc_score(defaulted, scores))
    assert measured.brier == pytest.approx(brier_score_loss(defaulted, scores))
    assert measured.expected_cost == pytest.approx(expected_cost(defaulted, scores >= 0.3, costs))
    assert len(measured.calibration) == 10
    assert sum(b.rows for b in measured.calibration) == 400
    rates = [b.default_rate for b in measured.calibration]
    assert rates[-1] > rates[0]  # the scores mean something: higher decile, more defaults


@pytest.mark.parametrize(
    "scores",
    [
        np.random.default_rng(5).beta(2, 6, size=1_000),
        np.array([0.1, 0.2, 0.2, 0.2, 0.5, 0.5, 0.5, 0.5, 0.9, 0.9, 0.9]),  # ties split an edge
        np.full(50, 0.3),  # one score: no bin at all, as pandas cuts it
    ],
)
def test_calibration_bins_are_pandas_score_deciles(scores: np.ndarray) -> None:
    defaulted = np.random.default_rng(6).uniform(size=scores.size) < scores
    deciles = pd.qcut(scores, 10, labels=False, duplicates="drop")
    expected = (
        pd.DataFrame({"decile": deciles, "score": scores, "defaulted": defaulted})
        .groupby("decile")
        .agg(rows=("score", "size"), mean=("score", "mean"), rate=("defaulted", "mean"))
    )
    costs = CostMatrix(false_negative=5, false_positive=1)

    measured = live_performance(defaulted, scores, np.full(scores.size, 0.5), costs).calibration

    assert [b.rows for b in measured] == expected["rows"].tolist()
    assert [b.mean_score for b in measured] == pytest.approx(expected["mean"].tolist())
    assert [b.default_rate for b in measured] == pytest.approx(expected["rate"].tolist())


def test_auc_waits_for_both_classes() -> None:
    costs = CostMatrix(false_negative=5, false_positive=1)
    assert math.isnan(live_performance([True, True], [0.2, 0.9], [0.5, 0.5], costs).roc_auc)
    assert live_performance([], [], [], costs).rows == 0


@pytest.mark.parametrize(
    ("value", "reason", "named"),
    [
        (None, DeadLetterReason.EMPTY, ""),
        (b"  ", DeadLetterReason.EMPTY, ""),
        (b"{nope", DeadLetterReason.INVALID_JSON, ""),
        (b'{"application_id": "a", "defaulted": 1, "observed_on": "2026-01-02"}',
         DeadLetterReason.VALIDATION, "defaulted"),
        (b'{"application_id": "a", "defaulted": true}', DeadLetterReason.VALIDATION, "observed_on"),
        (b"x" * 5_000, DeadLetterReason.OVERSIZED, ""),
    ],
)  # fmt: skip
def test_a_malformed_outcome_is_classified_like_the_worker_s_dead_letters(
    value: bytes | None, reason: DeadLetterReason, named: str
) -> None:
    failure = decode(LoanOutcome, value, max_bytes=4_096)
    assert not hasattr(failure, "application_id")
    assert failure.reason is reason  # type: ignore[union-attr]
    assert named in failure.message  # type: ignore[union-attr]


def test_outbound_records_survive_the_outbox_byte_for_byte() -> None:
    record = OutboundRecord("dlq", b"\xff\x00key", b"\x80 not utf-8", [("error-type", b"x")])
    assert from_outbox(to_outbox(record)) == record
    assert from_outbox(to_outbox(OutboundRecord("t", None, None, []))).value is None


def _personal(n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame({
        "sex": rng.integers(1, 3, n), "age": rng.integers(20, 70, n),
        "marriage": rng.integers(1, 4, n), "education": rng.integers(1, 5, n),
    }).astype(float)  # fmt: skip


def test_live_fairness_is_the_training_gap_on_the_rows_with_personal_fields() -> None:
    rng = np.random.default_rng(6)
    n = 2_000
    personal = _personal(n, rng)
    personal.iloc[::2] = np.nan  # half the predictions came without personal fields
    scores = rng.uniform(size=n) * np.where(personal["sex"] == 2, 0.6, 1.0)  # women flagged less
    defaulted = rng.uniform(size=n) < 0.25
    thresholds = np.where(np.arange(n) < n // 2, 0.3, 0.5)  # a model change mid-window

    measured = live_fairness(defaulted, scores, thresholds, personal)

    known = personal["sex"].notna().to_numpy()
    flagged = (scores >= thresholds)[known]
    sex = personal["sex"].to_numpy()[known]
    by_hand = abs(flagged[sex == 1].mean() - flagged[sex == 2].mean())
    assert measured.available
    assert measured.rows == n // 2
    assert set(measured.gaps) == set(FAIRNESS_GATE_METRICS)
    assert measured.gaps["demographic_parity_difference_sex"] == pytest.approx(by_hand)
    assert measured.gaps["demographic_parity_difference_sex"] > 0.05


def test_live_fairness_is_unavailable_without_personal_fields_not_zero() -> None:
    personal = pd.DataFrame(np.nan, index=range(50), columns=list(PERSONAL_COLUMNS))

    measured = live_fairness(np.zeros(50, bool), np.full(50, 0.2), np.full(50, 0.5), personal)

    assert not measured.available
    assert measured.gaps == {}
    assert "unavailable" in fairness_line(measured)


def test_live_auc_alerts_once_below_the_margin_and_rearms_only_back_within_its_rearm_margin() -> (
    None
):
    # validation 0.78, margin 0.05 (alert below 0.73), re-arm margin 0.02 (back at 0.76)
    series = [0.77, 0.72, 0.70, 0.74, 0.75, 0.71, 0.765, 0.729]

    raised, state = [], {}
    for live in series:
        auc = VersionAuc(model_run_id="r", rows=800, live=live, validation=0.78)
        alerts, state = auc_crossing(auc, state, _SETTINGS, _NOW)
        raised.append([(a.kind, a.subject, a.value, a.limit) for a in alerts])

    crossing = (AlertKind.ROC_AUC, AUC_SUBJECT)
    assert raised == [[], [(*crossing, 0.72, pytest.approx(0.73))], [], [], [], [], [],
                      [(*crossing, 0.729, pytest.approx(0.73))]]  # fmt: skip
    assert auc_crossing(None, state, _SETTINGS, _NOW) == ([], {})  # unmeasurable: state kept


def test_a_fairness_gap_alerts_once_above_the_gate_and_only_when_enough_rows_measure_it() -> None:
    gaps = dict.fromkeys(FAIRNESS_GATE_METRICS, 0.05)
    series = [0.25, 0.3, 0.18, 0.22, 0.12, 0.21]  # the gate 0.20, re-armed at 0.15

    raised, state = [], {}
    for parity in series:
        fairness = LiveFairness(800, gaps | {"demographic_parity_difference_sex": parity})
        alerts, state = fairness_crossings(fairness, state, _SETTINGS, model_run_id="r", now=_NOW)
        raised.append([(a.kind, a.subject, a.value) for a in alerts])

    crossing = (AlertKind.FAIRNESS, "demographic_parity_difference_sex")
    assert raised == [[(*crossing, 0.25)], [], [], [], [], [(*crossing, 0.21)]]
    too_few = LiveFairness(499, dict.fromkeys(FAIRNESS_GATE_METRICS, 0.9))
    assert fairness_crossings(too_few, {}, _SETTINGS, model_run_id="r", now=_NOW) == ([], {})
    unmeasured = LiveFairness(800, dict.fromkeys(FAIRNESS_GATE_METRICS, math.nan))
    assert fairness_crossings(unmeasured, {}, _SETTINGS, model_run_id="r", now=_NOW) == ([], {})


def test_a_rearm_level_past_its_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="auc_rearm_margin must be below auc_margin"):
        Settings(auc_margin=0.02, auc_rearm_margin=0.05)
