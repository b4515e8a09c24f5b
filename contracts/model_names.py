"""Names shared by training (which registers models) and the scorer (which serves them)."""

from __future__ import annotations

from typing import Final

MODEL_NAME: Final = "credit-default"
CHAMPION_ALIAS: Final = "champion"
PREVIOUS_ALIAS: Final = "previous"
SHADOW_ALIAS: Final = "challenger"
"""The alias ``promote --from-shadow`` promotes by default (the worker shadows whichever alias
``SCORER_SHADOW_ALIAS`` names)."""
EXPERIMENT_NAME: Final = "credit-default"

# Model metadata (MLmodel ``metadata``): the loaded model carries its own threshold.
THRESHOLD_METADATA_KEY: Final = "threshold"

# Tags on a registered model version.
SELECTION_REASON_TAG: Final = "selection_reason"
EXPECTED_COST_TAG: Final = "expected_cost"
CANDIDATE_TAG: Final = "candidate"
FEATURE_POLICY_TAG: Final = "feature_policy"
"""The named feature policy the version was trained under (``training.policies``)."""
FEATURES_TAG: Final = "features"
"""The comma-separated contract fields the version uses, in its signature's order."""
FORCED_PROMOTION_TAG: Final = "forced_promotion"
"""Set when a research-only version was promoted by hand with the force flag: who forced what."""

# More model metadata: how the worker explains a score (``consumer.explaining``).
FEATURE_POLICY_METADATA_KEY: Final = "feature_policy"
EXPLANATION_METADATA_KEY: Final = "explanation"
"""``{"method": <a method of consumer.explaining.METHODS>, "reference": {feature: value}}``."""
