"""Names shared by training (which registers models) and the scorer (which serves them)."""

from __future__ import annotations

from typing import Final

MODEL_NAME: Final = "credit-default"
CHAMPION_ALIAS: Final = "champion"
PREVIOUS_ALIAS: Final = "previous"
EXPERIMENT_NAME: Final = "credit-default"

# Model metadata (MLmodel ``metadata``): the loaded model carries its own threshold.
THRESHOLD_METADATA_KEY: Final = "threshold"

# Tags on a registered model version.
SELECTION_REASON_TAG: Final = "selection_reason"
EXPECTED_COST_TAG: Final = "expected_cost"
CANDIDATE_TAG: Final = "candidate"
