"""The report a person looks at (``python -m monitor report``): PSI per feature and the
score against the limit, and the calibration curve of the joined outcomes, with the shadow
challenger's beside the champion's on the same applications when there is one, as one PNG."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt

from monitor.measures import ShadowComparison
from monitor.performance import LivePerformance


def render_report(
    psi: Mapping[str, float],
    performance: LivePerformance,
    limit: float,
    path: Path,
    comparison: ShadowComparison | None = None,
) -> Path:
    """Write the report to ``path`` (PNG) and return it."""
    figure, (drift_axis, calibration_axis) = plt.subplots(1, 2, figsize=(13, 6))
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
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _auc(performance: LivePerformance) -> str:
    return "n/a" if math.isnan(performance.roc_auc) else f"{performance.roc_auc:.3f}"
