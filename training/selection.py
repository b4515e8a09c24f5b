"""Choosing the champion among a training call's candidates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from training.results import CandidateResult
from training.settings import Family


@dataclass(frozen=True)
class Selection:
    """The chosen candidate (None if none qualifies), why, and a verdict per family."""

    champion: CandidateResult | None
    reason: str
    verdicts: Mapping[Family, str]


def select_champion(candidates: Sequence[CandidateResult], latency_budget_us: float) -> Selection:
    """The candidate with the lowest expected cost among those under the latency budget.

    A candidate qualifies when its batch ``inference_us_per_row`` is at most
    ``latency_budget_us``. Ties on cost go to the higher ROC-AUC, then to the
    earlier family in training order.
    """
    fast = [c for c in candidates if c.inference_us_per_row <= latency_budget_us]
    slow = [c for c in candidates if c.inference_us_per_row > latency_budget_us]
    rejected = ", ".join(f"{c.family} ({c.inference_us_per_row:.0f} µs/row)" for c in slow)
    budget = f"{latency_budget_us:g} µs/row"
    verdicts = {
        c.family: f"not promoted: {c.inference_us_per_row:.1f} µs/row is over the {budget} budget"
        for c in slow
    }
    if not fast:
        reason = f"no candidate under {budget}: {rejected}"
        return Selection(champion=None, reason=reason, verdicts=verdicts)
    champion = min(fast, key=lambda c: (c.expected_cost, -c.roc_auc))
    reason = (
        f"{champion.family}: lowest expected cost {champion.expected_cost:.3f} per application "
        f"among {len(fast)} candidate(s) under {budget} (ROC-AUC {champion.roc_auc:.3f}, "
        f"{champion.inference_us_per_row:.1f} µs/row)"
    )
    if rejected:
        reason += f"; rejected {rejected}"
    for c in fast:
        verdicts[c.family] = (
            f"promoted: {reason}"
            if c is champion
            else f"not promoted: expected cost {c.expected_cost:.3f} > champion "
            f"{champion.family}'s {champion.expected_cost:.3f}"
        )
    return Selection(champion=champion, reason=reason, verdicts=verdicts)
