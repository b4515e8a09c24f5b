"""Promotion from evidence: the shadow challenger replaces the champion only when the
monitor's joined outcomes show it costs less on the same applications.

The evidence is the monitor's own database (``MONITOR_DATABASE_URL``), read through the
monitor's store and measures, so promote judges exactly the numbers the monitor exports
(``monitor_shadow_*``): the applications the current champion scored officially and the
current challenger in the shadow, whose outcomes are known. The challenger wins when there
are at least ``min_outcomes`` of them and its expected cost per application, each decision
at its own threshold and costed by the same matrix as training's, is strictly lower than
the champion's on them. Anything else (too few, a tie, a higher cost) keeps the champion,
and the verdict says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from monitor.errors import StoreError
from monitor.measures import ShadowComparison, compare
from monitor.store import Store
from training.errors import EvidenceError
from training.evaluation import CostMatrix


@dataclass(frozen=True)
class ShadowVerdict:
    """Whether the challenger should become champion, and why (one sentence)."""

    promote: bool
    reason: str


def judge(comparison: ShadowComparison, min_outcomes: int) -> ShadowVerdict:
    """The verdict on ``comparison``: promote only on enough rows and a strictly lower cost."""
    champion, challenger = comparison.champion, comparison.challenger
    versions = (
        f"challenger v{comparison.challenger_version} vs champion v{comparison.champion_version}"
    )
    if comparison.rows < min_outcomes:
        return ShadowVerdict(
            False,
            f"{versions}: only {comparison.rows:,} labelled applications scored by both, "
            f"{min_outcomes:,} needed",
        )
    costs = (
        f"expected cost {challenger.expected_cost:.4f} vs {champion.expected_cost:.4f} "
        f"per application on {comparison.rows:,} labelled applications scored by both"
    )
    if challenger.expected_cost < champion.expected_cost:
        return ShadowVerdict(True, f"{versions}: {costs}")
    return ShadowVerdict(False, f"{versions}: not cheaper, {costs}")


def read_evidence(
    database_url: str, costs: CostMatrix, champion_version: str, challenger_version: str
) -> ShadowComparison:
    """Both versions measured on the monitor's joined outcomes at ``database_url``.

    Raises ``EvidenceError`` when the database cannot be read (or, for SQLite, does not
    exist: opening it would create an empty one and report no evidence for the wrong reason).
    """
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        raise EvidenceError(f"no monitor database at {url.database!r} (MONITOR_DATABASE_URL)")
    try:
        store = Store(database_url)
        try:
            with store.transaction() as tx:
                return compare(tx, costs, champion_version, challenger_version)
        finally:
            store.close()
    except StoreError as exc:
        raise EvidenceError(str(exc)) from exc
