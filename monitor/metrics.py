"""The monitor's Prometheus metrics, on their own registry (served by ``python -m monitor``)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from monitor.fairness import LiveFairness
from monitor.measures import ShadowComparison
from monitor.performance import LivePerformance


class Metrics:
    """Every instrument the monitor updates; one instance per running monitor."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.psi = Gauge("monitor_psi", "PSI of the live window", ["subject"], registry=r)
        window = "on the most recent joined outcomes (performance_window_rows)"
        self.roc_auc = Gauge("monitor_live_roc_auc", f"ROC-AUC {window}", registry=r)
        self.brier = Gauge("monitor_live_brier", f"Brier score {window}", registry=r)
        self.cost = Gauge(
            "monitor_live_expected_cost", f"Expected cost per application {window}", registry=r
        )
        self.joined = Gauge(
            "monitor_joined_rows", "Predictions with an outcome in the live window", registry=r
        )
        self.pending = Gauge(
            "monitor_pending_outcomes", "Outcomes waiting for their prediction", registry=r
        )
        self.expired = Counter(
            "monitor_outcomes_expired", "Outcomes dropped unjoined (expiry or bound)", registry=r
        )
        self.duplicates = Counter(
            "monitor_outcomes_duplicate", "Outcomes already recorded, ignored", registry=r
        )
        self.dead_letters = Counter(
            "monitor_outcomes_dead_lettered", "Malformed outcomes sent to the DLQ", registry=r
        )
        self.alerts = Counter("monitor_alerts", "Alerts written", ["subject"], registry=r)
        self.batches = Counter("monitor_batches", "Batches committed", registry=r)
        self.fairness = Gauge(
            "monitor_live_fairness_gap",
            f"Gap training's fairness gate checks (metric), {window} with personal fields",
            ["metric"],
            registry=r,
        )
        self.fairness_rows = Gauge(
            "monitor_live_fairness_rows",
            "Joined outcomes in the live window whose prediction carried personal fields",
            registry=r,
        )
        self.fairness_available = Gauge(
            "monitor_live_fairness_available",
            "1 when live fairness is measured; 0: no prediction in the window carried personal "
            "fields (SCORER_MONITOR_PERSONAL_FIELDS off), and no gap is exported",
            registry=r,
        )
        self.paired = Gauge(
            "monitor_shadow_paired_rows",
            "Applications with an outcome scored by both the champion and the shadow challenger, "
            "in the live window",
            registry=r,
        )
        self.paired_auc, self.paired_brier, self.paired_cost = (
            Gauge(f"monitor_shadow_{name}", f"{what} on the paired rows", ["role"], registry=r)
            for name, what in (
                ("roc_auc", "ROC-AUC"),
                ("brier", "Brier score"),
                ("expected_cost", "Expected cost per application"),
            )
        )

    def show_drift(self, values: Mapping[str, float]) -> None:
        for subject, value in values.items():
            self.psi.labels(subject=subject).set(value)

    def show_performance(self, performance: LivePerformance) -> None:
        self.joined.set(performance.rows)
        for gauge, value in (
            (self.roc_auc, performance.roc_auc),
            (self.brier, performance.brier),
            (self.cost, performance.expected_cost),
        ):
            gauge.set(value)  # NaN until measurable (one class only): "no value yet"

    def show_fairness(self, fairness: LiveFairness) -> None:
        self.fairness_rows.set(fairness.rows)
        self.fairness_available.set(1 if fairness.available else 0)
        self.fairness.clear()  # unavailable: no series at all, rather than zeros
        for metric, value in fairness.gaps.items():
            self.fairness.labels(metric=metric).set(value)  # NaN: groups too small

    def show_comparison(self, comparison: ShadowComparison | None) -> None:
        """Champion and challenger on the same applications (role label), once any shadow
        score arrived."""
        if comparison is None:
            return
        self.paired.set(comparison.rows)
        for role, performance in (
            ("champion", comparison.champion),
            ("challenger", comparison.challenger),
        ):
            self.paired_auc.labels(role=role).set(performance.roc_auc)
            self.paired_brier.labels(role=role).set(performance.brier)
            self.paired_cost.labels(role=role).set(performance.expected_cost)
