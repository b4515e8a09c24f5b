"""What sources yield: valid messages, or invalid records explaining what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import ValidationError

from contracts import LoanApplication

WHOLE_RECORD = "<record>"
"""The field name reported for a problem with a record as a whole (not JSON, not an object)."""


@dataclass(frozen=True, slots=True)
class Issue:
    """One reason a record is invalid: the field it concerns, and pydantic's explanation."""

    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class InvalidRecord:
    """A source record that does not satisfy the contract; it is reported, never sent.

    ``line`` is the 1-based line in the source file (a CSV's header is line 1, so its
    first data row is line 2); for in-memory sources it is the 1-based position.
    """

    line: int
    issues: tuple[Issue, ...]

    def describe(self) -> str:
        """A one-line explanation such as ``line 7: age: Input should be ...``."""
        reasons = "; ".join(f"{issue.field}: {issue.reason}" for issue in self.issues)
        return f"line {self.line}: {reasons}"


Record = LoanApplication | InvalidRecord
"""What every reader yields, in source order."""


def invalid_from_validation(
    line: int, error: ValidationError, rename: dict[str, str] | None = None
) -> InvalidRecord:
    """An ``InvalidRecord`` listing each pydantic error's field and message.

    ``rename`` maps contract field names back to the source's own column names, so the
    report names what the user sees in their file.
    """
    rename = rename or {}
    issues = tuple(
        Issue(field=_field_name(err["loc"], rename), reason=err["msg"]) for err in error.errors()
    )
    return InvalidRecord(line=line, issues=issues)


def _field_name(loc: tuple[int | str, ...], rename: dict[str, str]) -> str:
    if not loc:
        return WHOLE_RECORD
    head = str(loc[0])
    return rename.get(head, head)


_ValidT = TypeVar("_ValidT")


class RecordSource(Iterator[_ValidT | InvalidRecord], Generic[_ValidT]):
    """An iterator of records that knows how many it will yield, when it can (for progress).

    ``_ValidT`` is the message a valid record is: ``LoanApplication`` or ``LoanOutcome``.
    """

    def __init__(self, records: Iterator[_ValidT | InvalidRecord], total: int | None) -> None:
        self._records = records
        self.total = total

    def __iter__(self) -> RecordSource[_ValidT]:
        return self

    def __next__(self) -> _ValidT | InvalidRecord:
        return next(self._records)
