"""JSON Schema export of the message contracts (``python -m contracts.schema``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from contracts.alert import ModelAlert
from contracts.application import LoanApplication
from contracts.outcome import LoanOutcome
from contracts.score import LoanScore

_HERE: Final = Path(__file__).parent
SCHEMA_PATH: Final = _HERE / "loan_application.schema.json"
OUTCOME_SCHEMA_PATH: Final = _HERE / "loan_outcome.schema.json"
SCORE_SCHEMA_PATH: Final = _HERE / "loan_score.schema.json"
ALERT_SCHEMA_PATH: Final = _HERE / "model_alert.schema.json"

EXPORTED_SCHEMAS: Final[dict[Path, type[BaseModel]]] = {
    SCHEMA_PATH: LoanApplication,
    OUTCOME_SCHEMA_PATH: LoanOutcome,
    SCORE_SCHEMA_PATH: LoanScore,
    ALERT_SCHEMA_PATH: ModelAlert,
}
"""Every message crossing to another team (published to us, or subscribed to by them: the
scores, whose reason codes a downstream team reads, and the model alerts on-call tooling
reads), and where its schema is kept."""


def render_schema(model: type[BaseModel] = LoanApplication) -> str:
    """``model``'s JSON Schema as the exact text kept in the repository."""
    return json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    for path, model in EXPORTED_SCHEMAS.items():
        path.write_text(render_schema(model), encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
