"""The report a person looks at (``python -m monitor report``): PSI per feature and the
score against the limit, the calibration curve of the joined outcomes, with the shadow
challenger's beside the champion's on the same applications when there is one, and the live
fairness gaps against the training gate (or, in their place, why they are unavailable), as
one PNG."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from monitor.fairness import LiveFairness
from monitor.measures import ShadowComparison
from monitor.performance import LivePerformance

FAIRNESS_UNAVAILABLE = (
    "live fairness unavailable: no prediction in the window carries personal fields "
    "(the workers' SCORER_MONITOR_PERSONAL_FIELDS is off)"
)


def render_report(
    psi: Mapping[str, float],
    performance: LivePerformance,
    limit: float,
    path: Path,
    comparison: ShadowComparison | None = None,
    fairness: LiveFairness | None = None,
    fairness_limit: float = 0.2,
) -> Path:
    """Write the report to ``path`` (PNG) and return it."""
    figure, (drift_axis, calibration_axis, fairness_axis) = plt.subplots(
        1, 3, figsize=(19, 6), gridspec_kw={"width_ratios": [1, 1, 0.8]}
    )
    subjects = sorted(psi, key=psi.__getitem__)
    colours = ["tab:red" if psi[s] > limit else "tab:blue" for s in subjects]
    drift_axis.barh(subjects, [psi[s] for s in subjects], color=colours)
    drift_axis.axvline(limit, color="tab:red", linestyle="--", label=f"limit {limit:g}")
    drift_axis.set(title="Population stability index (live window vs training)", xlabel="PSI")
    drift_axis.legend()
    bins = performance.calibration
    calibration_axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    calibration_axis.plot(
        [b.mean_score for b in bins], [b.default_rate for b in bins], marker="o", label="live"
    )
    if comparison is not None and comparison.rows:
        for role, version, measured in (
            ("champion", comparison.champion_version, comparison.champion),
            ("challenger", comparison.challenger_version, comparison.challenger),
        ):
            calibration_axis.plot(
                [b.mean_score for b in measured.calibration],
                [b.default_rate for b in measured.calibration],
                marker="s" if role == "champion" else "^",
                linestyle="--",
                label=f"{role} v{version} on {comparison.rows:,} paired: "
                f"ROC-AUC {_auc(measured)}, cost {measured.expected_cost:.3f}",
            )
    calibration_axis.set(
        title=f"Calibration by score decile ({performance.rows:,} joined, "
        f"ROC-AUC {_auc(performance)})",
        xlabel="mean predicted P(default)",
        ylabel="observed default rate",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    calibration_axis.legend()
    _draw_fairness(fairness_axis, fairness or LiveFairness(0, {}), fairness_limit)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def fairness_line(fairness: LiveFairness) -> str:
    """One line for a person: the gaps, or why there are none."""
    if not fairness.available:
        return FAIRNESS_UNAVAILABLE
    gaps = ", ".join(f"{name} {_number(value)}" for name, value in fairness.gaps.items())
    return f"live fairness on {fairness.rows:,} joined outcomes with personal fields: {gaps}"


def _draw_fairness(axis: Axes, fairness: LiveFairness, limit: float) -> None:
    axis.set(title="Live fairness gaps (the training gate's)")
    if not fairness.available:
        axis.text(0.5, 0.5, textwrap.fill(FAIRNESS_UNAVAILABLE, 42), ha="center",
                  va="center", transform=axis.transAxes)  # fmt: skip
        axis.set_axis_off()
        return
    names = list(fairness.gaps)
    values = [0.0 if math.isnan(v) else v for v in fairness.gaps.values()]
    colours = ["tab:red" if v > limit else "tab:blue" for v in values]
    axis.barh(names, values, color=colours)
    for y, value in enumerate(fairness.gaps.values()):
        if math.isnan(value):
            axis.text(0, y, " n/a: groups too small", va="center")
    axis.axvline(limit, color="tab:red", linestyle="--", label=f"gate {limit:g}")
    axis.set(xlabel=f"difference ({fairness.rows:,} joined with personal fields)")
    axis.legend()


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _auc(performance: LivePerformance) -> str:
    return "n/a" if math.isnan(performance.roc_auc) else f"{performance.roc_auc:.3f}"
