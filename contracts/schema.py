"""JSON Schema export of the message contract (``python -m contracts.schema``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from contracts.application import LoanApplication
from contracts.score import LoanScore

SCHEMA_PATH: Final = Path(__file__).with_name("loan_application.schema.json")
SCORE_SCHEMA_PATH: Final = Path(__file__).with_name("loan_score.schema.json")


def render_schema(message: type[BaseModel] = LoanApplication) -> str:
    """``message``'s JSON Schema as the exact text kept in the repository."""
    return json.dumps(message.model_json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    for path, message in ((SCHEMA_PATH, LoanApplication), (SCORE_SCHEMA_PATH, LoanScore)):
        path.write_text(render_schema(message), encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
