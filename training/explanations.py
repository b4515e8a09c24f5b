"""Explanation plots of a candidate: global feature effects and synthetic applicants.

The contributions are the ones the worker computes (:mod:`consumer.explaining`), so
what the run shows is what a score's reasons will say. Applicants shown one by one
are synthetic: the typical applicant (each feature's median) and variants of it, never
a real client's row (run artifacts must carry no personal data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy.special import logit

from consumer.explaining import Explainer
from training import plots

_GLOBAL_SAMPLE_ROWS: Final = 1000


def synthetic_applicants(typical: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The typical applicant and three variants a credit officer would recognise."""
    row = typical.iloc[0]
    variants: dict[str, dict[str, float]] = {
        "typical": {},
        "recently_late": {"pay_0": 2.0, "pay_2": 2.0},
        "low_limit_high_balance": {"limit_bal": 20_000.0, "bill_amt1": 19_000.0},
        "no_recent_payment": {"pay_amt1": 0.0, "pay_amt2": 0.0, "pay_0": 1.0},
    }
    out = {}
    for name, changes in variants.items():
        applicant = row.copy()
        for feature, value in changes.items():
            if feature in applicant.index:
                applicant[feature] = value
        out[name] = applicant.to_frame().T.astype(np.float64)
    return out


def write_explanation_plots(
    directory: Path,
    title: str,
    pipeline: Any,
    explainer: Explainer,
    sample: pd.DataFrame,
    typical: pd.DataFrame,
) -> Path:
    """Write ``explanations/global_importance.png`` and one waterfall per synthetic applicant."""
    out = directory / "explanations"
    out.mkdir()
    features = list(explainer.features)
    rows = sample.loc[:, features].iloc[:_GLOBAL_SAMPLE_ROWS]
    values = explainer.contributions(rows, pipeline.predict_proba(rows)[:, 1])
    plots.importance_plot(
        features, np.abs(values).mean(axis=0), title, out / "global_importance.png"
    )
    base = float(logit(np.clip(pipeline.predict_proba(typical)[0, 1], 1e-12, 1 - 1e-12)))
    for name, applicant in synthetic_applicants(typical).items():
        proba = pipeline.predict_proba(applicant)[:, 1]
        contributions = explainer.contributions(applicant, proba)[0]
        labels = [f"{f} = {applicant.iloc[0][f]:g}" for f in features]
        plots.waterfall_plot(
            labels,
            contributions,
            base,
            f"{title}: {name} (p={proba[0]:.2f})",
            out / f"waterfall_{name}.png",
        )
    return out
