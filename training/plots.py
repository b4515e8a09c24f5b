"""Diagnostic figures, drawn with matplotlib's object API on the Agg canvas.

No pyplot: no global figure state and no GUI backend, whatever the caller's
environment (a notebook, a CI runner without display).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

_DPI = 100


def _figure() -> Figure:
    figure = Figure(figsize=(5, 4.5), dpi=_DPI, layout="tight")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, format="png")
    return path


def roc_plot(y_true: np.ndarray, proba: np.ndarray, title: str, path: Path) -> Path:
    """ROC curve with the chance diagonal."""
    fpr, tpr, _ = roc_curve(y_true, proba)
    figure = _figure()
    ax = figure.subplots()
    ax.plot(fpr, tpr, label=title)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC — {title}")
    ax.legend(loc="lower right")
    return _save(figure, path)


def pr_plot(y_true: np.ndarray, proba: np.ndarray, title: str, path: Path) -> Path:
    """Precision-recall curve with the base rate (a random ranking's precision)."""
    precision, recall, _ = precision_recall_curve(y_true, proba)
    figure = _figure()
    ax = figure.subplots()
    ax.plot(recall, precision, label=title)
    ax.axhline(float(np.mean(y_true)), linestyle="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall — {title}")
    ax.legend(loc="upper right")
    return _save(figure, path)


def confusion_plot(y_true: np.ndarray, flagged: np.ndarray, title: str, path: Path) -> Path:
    """Counts of (actual, predicted) at the chosen threshold."""
    matrix = confusion_matrix(y_true, flagged, labels=[0, 1])
    figure = _figure()
    ax = figure.subplots()
    ax.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=colour)
    labels = ["no default", "default"]
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set(xlabel="predicted", ylabel="actual", title=f"Confusion matrix — {title}")
    return _save(figure, path)


def calibration_plot(y_true: np.ndarray, proba: np.ndarray, title: str, path: Path) -> Path:
    """Observed default rate against mean predicted probability, in quantile bins."""
    observed, predicted = calibration_curve(y_true, proba, n_bins=10, strategy="quantile")
    figure = _figure()
    ax = figure.subplots()
    ax.plot(predicted, observed, marker="o", label=title)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed default rate",
        title=f"Calibration — {title}",
    )
    ax.legend(loc="upper left")
    return _save(figure, path)


def comparison_plot(table: pd.DataFrame, latency_budget_us: float, path: Path) -> Path:
    """Candidates side by side: ROC-AUC, expected cost, and latency against the budget.

    ``table`` has one row per candidate, indexed by family, with the columns
    ``roc_auc``, ``expected_cost`` and ``inference_us_per_row``.
    """
    figure = Figure(figsize=(13, 4.5), dpi=_DPI, layout="tight")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    names = [str(name) for name in table.index]
    panels = [
        ("roc_auc", "validation ROC-AUC (higher is better)"),
        ("expected_cost", "expected cost per application (lower is better)"),
        ("inference_us_per_row", "inference µs/row (batch)"),
    ]
    for ax, (column, label) in zip(axes, panels, strict=True):
        ax.barh(names, table[column])
        ax.set(title=label)
        ax.invert_yaxis()
    axes[2].axvline(latency_budget_us, color="red", linestyle="--", label="latency budget")
    axes[2].set_xscale("log")
    axes[2].legend(loc="lower right")
    axes[0].set_xlim(left=0.5)
    return _save(figure, path)


def importance_plot(features: list[str], mean_abs: np.ndarray, title: str, path: Path) -> Path:
    """Global explanation: mean absolute log-odds contribution per feature, largest on top."""
    order = np.argsort(mean_abs)
    figure = Figure(figsize=(6, 0.3 * len(features) + 1.5), dpi=_DPI, layout="tight")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.barh([features[i] for i in order], mean_abs[order])
    ax.set(xlabel="mean |contribution| (log-odds of default)", title=f"Feature effect — {title}")
    return _save(figure, path)


def waterfall_plot(
    labels: list[str], contributions: np.ndarray, base: float, title: str, path: Path
) -> Path:
    """One applicant: from the reference's log-odds, each feature's step, to the score.

    ``labels`` name each step (feature = value); steps are drawn largest first.
    """
    order = np.argsort(-np.abs(contributions))
    steps = contributions[order]
    starts = base + np.concatenate([[0.0], np.cumsum(steps)[:-1]])
    figure = Figure(figsize=(7, 0.3 * len(labels) + 1.5), dpi=_DPI, layout="tight")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    colours = ["tab:red" if step > 0 else "tab:blue" for step in steps]
    ax.barh([labels[i] for i in order], steps, left=starts, color=colours)
    ax.axvline(base, color="grey", linestyle="--", label="typical applicant")
    ax.axvline(base + steps.sum(), color="black", label="this applicant")
    ax.invert_yaxis()
    ax.set(xlabel="log-odds of default", title=title)
    ax.legend(loc="lower right")
    return _save(figure, path)
