"""Group fairness of a candidate's decisions, computed with pandas.

fairlearn would give the same numbers, but it is one more dependency (and its
transitive ones) for a dozen lines of group-by arithmetic; the definitions below
follow fairlearn's: the demographic-parity difference is the spread (max - min) of
selection rates across groups, the equalized-odds difference the larger of the
spreads of true- and false-positive rates.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

AGE_BANDS: Final = (18, 25, 35, 45, 55, 121)
AGE_BAND_LABELS: Final = ("18-24", "25-34", "35-44", "45-54", "55+")
SEX_LABELS: Final = {1: "male", 2: "female"}
MARRIAGE_LABELS: Final = {0: "undocumented", 1: "married", 2: "single", 3: "others"}
MIN_GROUP_SIZE: Final = 30
"""Groups smaller than this are reported but left out of the differences: their rates
are noise (MARRIAGE 0 has a few dozen rows in the whole dataset)."""


def group_table(
    features: pd.DataFrame, y_true: np.ndarray, proba: np.ndarray, threshold: float | np.ndarray
) -> pd.DataFrame:
    """One row per (attribute, group): size, base rate, selection rate, TPR, FPR, AUC.

    ``features`` uses the contract's names; ``y_true``/``proba`` (and ``threshold`` when it
    is one per row: the monitor's live rows, each decided by its own version) align with
    its rows.
    Rates a group cannot define (no positives, one class only) are NaN.
    """
    attributes = {
        "sex": features["sex"].map(SEX_LABELS),
        "age_band": pd.cut(features["age"], AGE_BANDS, right=False, labels=AGE_BAND_LABELS),
        "marriage": features["marriage"].map(MARRIAGE_LABELS),
    }
    frame = pd.DataFrame({"y": np.asarray(y_true), "p": np.asarray(proba)}, index=features.index)
    frame["flag"] = frame["p"] >= threshold
    rows = [
        _group_row(attribute, str(group), part)
        for attribute, groups in attributes.items()
        for group, part in frame.groupby(groups.astype(str), sort=True)
    ]
    return pd.DataFrame(rows)


def disparities(table: pd.DataFrame) -> pd.DataFrame:
    """Per attribute: demographic-parity and equalized-odds differences over groups of
    at least ``MIN_GROUP_SIZE`` rows."""
    large = table[table["n"] >= MIN_GROUP_SIZE]
    spread = large.groupby("attribute")[["selection_rate", "tpr", "fpr"]].agg(_spread)
    return pd.DataFrame(
        {
            "demographic_parity_difference": spread["selection_rate"],
            "equalized_odds_difference": spread[["tpr", "fpr"]].max(axis=1),
        }
    )


def disparity_metrics(disparities: pd.DataFrame) -> dict[str, float]:
    """``disparities`` as flat ``<measure>_<attribute>`` metrics (the names
    ``training.selection.FAIRNESS_GATE_METRICS`` gates); a difference no group pair could
    measure is left out."""
    return {
        f"{column}_{attribute}": float(value)
        for attribute, row in disparities.iterrows()
        for column, value in row.items()
        if np.isfinite(value)
    }


def _spread(values: pd.Series) -> float:
    return float(values.max() - values.min())


def _group_row(attribute: str, group: str, part: pd.DataFrame) -> dict[str, object]:
    positives = part["y"] == 1
    negatives = ~positives
    return {
        "attribute": attribute,
        "group": group,
        "n": len(part),
        "default_rate": float(positives.mean()),
        "selection_rate": float(part["flag"].mean()),
        "tpr": float(part.loc[positives, "flag"].mean()) if positives.any() else np.nan,
        "fpr": float(part.loc[negatives, "flag"].mean()) if negatives.any() else np.nan,
        "roc_auc": (
            float(roc_auc_score(part["y"], part["p"])) if part["y"].nunique() == 2 else np.nan
        ),
    }
