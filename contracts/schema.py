"""JSON Schema export of the message contract (``python -m contracts.schema``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from contracts.application import LoanApplication

SCHEMA_PATH: Final = Path(__file__).with_name("loan_application.schema.json")


def render_schema() -> str:
    """The contract's JSON Schema as the exact text kept in the repository."""
    return json.dumps(LoanApplication.model_json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_PATH.write_text(render_schema(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")


if __name__ == "__main__":
    main()
