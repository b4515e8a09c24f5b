"""Feature policies: which contract fields a model may use, chosen at training time.

The application contract keeps every field (fairness monitoring needs the personal
ones); a policy decides which of them reach the model. The model then carries its
policy (a version tag and MLmodel metadata) and its features (its signature), and the
worker selects exactly those from each application.

``fair-lending`` (the default) leaves out SEX and MARRIAGE, which ECOA / Regulation B
(12 CFR 1002.6(b)) forbid as bases of a credit decision, and AGE: Regulation B allows
age only in an empirically derived, demonstrably and statistically sound system that
assigns the elderly (62 and over) no negative value (1002.6(b)(2)(ii)). A learned,
non-monotone model cannot show that for every version without a per-version audit, and
the data holds too few applicants over 62 to show it statistically. Leaving SEX,
MARRIAGE and AGE out together cost 0.000-0.012 of validation ROC-AUC per family in a
quick run (closing note of issue 12). AGE stays in the fairness table, by age band.
``all`` is for research only: its versions are never promoted by training and
``promote`` refuses them unless forced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from contracts import FEATURE_COLUMNS
from contracts.model_names import FORCED_PROMOTION_TAG
from training.errors import PolicyError


@dataclass(frozen=True)
class FeaturePolicy:
    """A named choice of model inputs among the contract's fields."""

    name: str
    excluded: frozenset[str]
    research_only: bool
    description: str

    @property
    def features(self) -> tuple[str, ...]:
        """The fields a model under this policy uses, in contract order."""
        return tuple(name for name in FEATURE_COLUMNS if name not in self.excluded)


FAIR_LENDING: Final = "fair-lending"
ALL_FEATURES: Final = "all"

POLICIES: Final[dict[str, FeaturePolicy]] = {
    policy.name: policy
    for policy in (
        FeaturePolicy(
            FAIR_LENDING,
            frozenset({"sex", "marriage", "age"}),
            research_only=False,
            description="no sex, marital status or age: prohibited or restricted bases",
        ),
        FeaturePolicy(
            ALL_FEATURES,
            frozenset(),
            research_only=True,
            description="every contract field, protected ones included: research only",
        ),
    )
}
DEFAULT_POLICY: Final = FAIR_LENDING


def promotion_tags(policy_name: str | None, version: str, *, force: bool) -> dict[str, str]:
    """Tags to record when promoting ``version`` trained under ``policy_name``.

    A research-only policy is refused (:class:`~training.errors.PolicyError`) unless
    ``force``; then the returned tag records that it was forced. A version with no
    policy tag predates policies and is allowed, as before.
    """
    policy = POLICIES.get(policy_name) if policy_name is not None else None
    if policy is None or not policy.research_only:
        return {}
    if not force:
        raise PolicyError(
            f"version {version} was trained under the research-only feature policy "
            f"{policy.name!r} ({policy.description}); pass --force-research-policy to "
            "promote it anyway (recorded on the version)"
        )
    return {FORCED_PROMOTION_TAG: f"research-only feature policy {policy.name!r} forced by hand"}
