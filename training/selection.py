"""Choosing the champion among a training call's candidates."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from training.results import CandidateResult
from training.settings import Family

FAIRNESS_GATE_METRICS: Final = tuple(
    f"{measure}_{attribute}"
    for attribute in ("sex", "age_band")
    for measure in ("demographic_parity_difference", "equalized_odds_difference")
)
"""The fairness-table differences a champion must keep under the limit (marriage is
reported but not gated: its groups are undocumented codes and 'others')."""


@dataclass(frozen=True)
class Selection:
    """The chosen candidate (None if none qualifies), why, and a verdict per family."""

    champion: CandidateResult | None
    reason: str
    verdicts: Mapping[Family, str]


def fairness_problems(candidate: CandidateResult, limit: float) -> list[str]:
    """The gated differences of ``candidate`` over ``limit`` (a metric absent, because no
    group was large enough to measure, is not a problem)."""
    return [
        f"{name} {value:.3f}"
        for name in FAIRNESS_GATE_METRICS
        if math.isfinite(value := candidate.metrics.get(name, math.nan)) and value > limit
    ]


def select_champion(
    candidates: Sequence[CandidateResult],
    latency_budget_us: float,
    *,
    fairness_limit: float = math.inf,
    research_only: str | None = None,
) -> Selection:
    """The candidate with the lowest expected cost among the eligible ones.

    A candidate is eligible when its batch ``scoring_us_per_row`` (inference and reason
    codes: the worker computes both by default) is at most ``latency_budget_us`` and
    none of its ``FAIRNESS_GATE_METRICS`` exceeds ``fairness_limit``. When
    ``research_only`` names the call's feature policy, none is eligible (such versions
    are promoted only by hand, forced). Ties on cost go to the higher ROC-AUC, then to
    the earlier family in training order.
    """
    budget = f"{latency_budget_us:g} µs/row"
    refusals: dict[Family, tuple[str, str]] = {}  # family -> (short, verdict)
    for c in candidates:
        if research_only is not None:
            why = f"feature policy {research_only!r} is research-only"
            refusals[c.family] = ("research-only", why)
        elif c.scoring_us_per_row > latency_budget_us:
            why = f"{c.scoring_us_per_row:.1f} µs/row is over the {budget} budget"
            refusals[c.family] = (f"{c.scoring_us_per_row:.0f} µs/row", why)
        elif problems := fairness_problems(c, fairness_limit):
            why = f"{', '.join(problems)} over the fairness limit {fairness_limit:g}"
            refusals[c.family] = (f"unfair: {', '.join(problems)}", why)
    eligible = [c for c in candidates if c.family not in refusals]
    rejected = ", ".join(f"{family} ({short})" for family, (short, _) in refusals.items())
    verdicts = {family: f"not promoted: {why}" for family, (_, why) in refusals.items()}
    gate = f"under {budget}"
    if math.isfinite(fairness_limit):
        gate += f" and within the fairness limit {fairness_limit:g}"
    if not eligible:
        reason = f"no candidate {gate}: {rejected}"
        return Selection(champion=None, reason=reason, verdicts=verdicts)
    champion = min(eligible, key=lambda c: (c.expected_cost, -c.roc_auc))
    reason = (
        f"{champion.family}: lowest expected cost {champion.expected_cost:.3f} per application "
        f"among {len(eligible)} candidate(s) {gate} (ROC-AUC {champion.roc_auc:.3f}, "
        f"{champion.scoring_us_per_row:.1f} µs/row)"
    )
    if rejected:
        reason += f"; rejected {rejected}"
    for c in eligible:
        verdicts[c.family] = (
            f"promoted: {reason}"
            if c is champion
            else f"not promoted: expected cost {c.expected_cost:.3f} > champion "
            f"{champion.family}'s {champion.expected_cost:.3f}"
        )
    return Selection(champion=champion, reason=reason, verdicts=verdicts)
