"""An explicit corpus of hostile record values, each with the outcome the worker must give it.

Used three ways: the unit tests assert each case's outcome, the worker-routing property
test mixes them into batches, and ``scripts/fuzz-decoder`` seeds the fuzzer with them.
Decisions this corpus pins down (see docs/security.md):

- Duplicate keys: the last occurrence wins, as in Python's ``json`` and orjson (the
  producer's parser), so producer and worker read the same application.
- A UTF-8 byte-order mark before the JSON is invalid JSON (RFC 8259 forbids sending one).
- Lone UTF-16 surrogates, even escaped (``"\\ud800"``), are invalid JSON: such a string
  could not be re-encoded as the UTF-8 key of the score.
- ``NaN``/``Infinity`` literals and numbers that overflow a double (``1e400``) parse, and
  then break the contract (every number must be finite); huge integers are out of domain.
- Deep nesting stops at the parser's recursion limit (invalid JSON), never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from contracts import FEATURE_COLUMNS
from contracts.topics import DeadLetterReason

CORPUS_MAX_BYTES: Final = 1 << 20
"""The ``max_bytes`` the corpus is decoded with: large enough to reach the parser."""

_RAW: Final = "__raw_json_value__"


@dataclass(frozen=True)
class HostileCase:
    """A record value and its expected outcome (``expected`` None: accepted and scored)."""

    name: str
    value: bytes | None
    expected: DeadLetterReason | None
    fields: dict[str, Any] = field(default_factory=dict)
    """For accepted cases: field values the decoded application must have."""


def valid_payload(**changes: Any) -> dict[str, Any]:
    """A valid application as a dict (a real-looking row), with ``changes`` applied."""
    payload: dict[str, Any] = dict.fromkeys(FEATURE_COLUMNS, 0)
    payload.update(
        application_id="app-1",
        limit_bal=20_000,
        sex=2,
        education=2,
        marriage=1,
        age=24,
        pay_0=2,
        bill_amt1=3_913,
        pay_amt2=689,
    )
    payload.update(changes)
    return payload


def valid_json(**changes: Any) -> bytes:
    """``valid_payload(**changes)`` as compact JSON bytes."""
    return orjson.dumps(valid_payload(**changes))


def with_raw(name: str, raw: bytes) -> bytes:
    """A valid application whose ``name`` field is the literal JSON text ``raw``."""
    return valid_json(**{name: _RAW}).replace(f'"{_RAW}"'.encode(), raw, 1)


def _id_json(raw_string_body: bytes) -> bytes:
    """A valid application whose application_id is the JSON string ``"<raw_string_body>"``."""
    return with_raw("application_id", b'"' + raw_string_body + b'"')


_GOOD = valid_json()
_V: Final = DeadLetterReason.VALIDATION
_J: Final = DeadLetterReason.INVALID_JSON
_U: Final = DeadLetterReason.NOT_UTF8
_E: Final = DeadLetterReason.EMPTY
_O: Final = DeadLetterReason.OVERSIZED


def _cases() -> list[HostileCase]:
    huge_int = str(10**1000).encode()
    return [
        # --- empty and size ---------------------------------------------------------------
        HostileCase("null value", None, _E),
        HostileCase("zero bytes", b"", _E),
        HostileCase("only whitespace", b" \t\r\n\x0b\x0c", _E),
        HostileCase("over the limit", b"[" * (CORPUS_MAX_BYTES + 1), _O),
        HostileCase("16 MiB", b"{" + b" " * (16 << 20) + b"}", _O),
        HostileCase(
            "just under the limit, padded",
            b"{" + b" " * (CORPUS_MAX_BYTES - len(_GOOD) - 1) + _GOOD[1:],
            None,
        ),
        HostileCase("1000 unknown fields", valid_json(**{f"x{i}": i for i in range(1000)}), _V),
        # --- nesting ----------------------------------------------------------------------
        HostileCase("100k nested arrays", b"[" * 100_000 + b"]" * 100_000, _J),
        HostileCase("5k nested objects", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, _J),
        HostileCase("deep array in a field", with_raw("age", b"[" * 3_000 + b"]" * 3_000), _J),
        HostileCase("shallow nesting in a field", with_raw("age", b"[[[[24]]]]"), _V),
        HostileCase("object for a number", with_raw("limit_bal", b'{"$gt": 0}'), _V),
        # --- numbers ----------------------------------------------------------------------
        HostileCase("1e400", with_raw("limit_bal", b"1e400"), _V),
        HostileCase("-1e400", with_raw("bill_amt1", b"-1e400"), _V),
        HostileCase("1e-400 underflows to 0, not > 0", with_raw("limit_bal", b"1e-400"), _V),
        HostileCase(
            "1e-400 underflows to 0, allowed",
            with_raw("bill_amt2", b"1e-400"),
            None,
            {"bill_amt2": 0.0},
        ),
        HostileCase("10**1000 age", with_raw("age", huge_int), _V),
        HostileCase("-10**1000 pay_0", with_raw("pay_0", b"-" + huge_int), _V),
        HostileCase("10**1000 limit_bal", with_raw("limit_bal", huge_int), _V),
        # More digits than the parser takes (about 4,300): refused while parsing.
        HostileCase("5001-digit integer", with_raw("age", b"9" * 5001), _J),
        HostileCase("NaN", with_raw("limit_bal", b"NaN"), _V),
        HostileCase("Infinity", with_raw("pay_amt1", b"Infinity"), _V),
        HostileCase("-Infinity", with_raw("bill_amt3", b"-Infinity"), _V),
        HostileCase("nan (lowercase)", with_raw("limit_bal", b"nan"), _J),
        HostileCase('"NaN" as a string', with_raw("limit_bal", b'"NaN"'), _V),
        HostileCase("hex number", with_raw("age", b"0x18"), _J),
        HostileCase("leading zeros", with_raw("age", b"024"), _J),
        HostileCase("24.0 for an integer", with_raw("age", b"24.0"), _V),
        HostileCase("true for an integer", with_raw("sex", b"true"), _V),
        HostileCase("string number", with_raw("age", b'"24"'), _V),
        HostileCase("-0.0", with_raw("bill_amt4", b"-0.0"), None, {"bill_amt4": 0.0}),
        HostileCase("1e8 exactly (the bound)", with_raw("limit_bal", b"1e8"), None),
        HostileCase("just over the bound", with_raw("limit_bal", b"100000000.00001"), _V),
        # --- keys -------------------------------------------------------------------------
        HostileCase(
            "duplicate key, last (valid) wins",
            _GOOD[:-1] + b',"age":99}',
            None,
            {"age": 99},
        ),
        HostileCase("duplicate key, last (invalid) wins", _GOOD[:-1] + b',"age":999}', _V),
        HostileCase(
            "duplicate id",
            _GOOD[:-1] + b',"application_id":"second"}',
            None,
            {"application_id": "second"},
        ),
        HostileCase("__proto__ key", _GOOD[:-1] + b',"__proto__":{"admin":true}}', _V),
        HostileCase("empty key", _GOOD[:-1] + b',"":1}', _V),
        HostileCase("key with NUL", _GOOD[:-1] + b',"age\\u0000":1}', _V),
        # --- Unicode ----------------------------------------------------------------------
        HostileCase("lone high surrogate escaped", _id_json(b"app-\\ud800"), _J),
        HostileCase("lone low surrogate escaped", _id_json(b"\\udc00"), _J),
        HostileCase("reversed surrogate pair", _id_json(b"\\ude00\\ud83d"), _J),
        HostileCase(
            "surrogate pair escaped",
            _id_json(b"app-\\ud83d\\ude00"),
            None,
            {"application_id": "app-\U0001f600"},
        ),
        HostileCase("UTF-8 BOM before the JSON", b"\xef\xbb\xbf" + _GOOD, _J),
        HostileCase(
            "BOM inside a string",
            _id_json("\ufeffapp".encode()),
            None,
            {"application_id": "\ufeffapp"},
        ),
        HostileCase("UTF-16 BOM and text", "\ufeff".encode("utf-16-le") + _GOOD, _U),
        HostileCase("UTF-16-LE without BOM", _GOOD.decode().encode("utf-16-le"), _J),
        HostileCase(
            "NUL escaped in a string",
            _id_json(b"app\\u0000"),
            None,
            {"application_id": "app\x00"},
        ),
        HostileCase("raw NUL in a string", _id_json(b"app\x00"), _J),
        HostileCase("NUL after the JSON", _GOOD + b"\x00", _J),
        HostileCase("raw newline in a string", _id_json(b"app\n1"), _J),
        HostileCase(
            "RTL override and marks",
            _id_json("\u202eapp\u200f-\u200e1\u2066".encode()),
            None,
            {"application_id": "\u202eapp\u200f-\u200e1\u2066"},
        ),
        HostileCase(
            "zero-width and combining characters",
            _id_json("a\u200d\u0301\u034f".encode()),
            None,
        ),
        HostileCase("noncharacter U+FFFF", _id_json("app\uffff".encode()), None),
        HostileCase(
            "128 emoji (characters, not bytes)", _id_json("\U0001f600".encode() * 128), None
        ),
        HostileCase("129 characters", _id_json(b"a" * 129), _V),
        HostileCase("overlong '/' (C0 AF)", _id_json(b"app\xc0\xaf"), _U),
        HostileCase("overlong NUL (C0 80)", _id_json(b"app\xc0\x80"), _U),
        HostileCase("UTF-8-encoded surrogate (ED A0 80)", _id_json(b"app\xed\xa0\x80"), _U),
        HostileCase("truncated multibyte", _id_json(b"app\xe2\x82"), _U),
        HostileCase("5-byte sequence", _id_json(b"app\xf8\x88\x80\x80\x80"), _U),
        HostileCase("beyond U+10FFFF (F4 90)", _id_json(b"app\xf4\x90\x80\x80"), _U),
        HostileCase("Latin-1 text", _id_json("café".encode("latin-1")), _U),
        HostileCase("non-UTF-8 after the JSON", _GOOD + b"\xff", _U),
        HostileCase("non-breaking space before the JSON", b"\xc2\xa0" + _GOOD, _J),
        # --- syntax and shape ------------------------------------------------------------
        HostileCase("whitespace around the JSON", b"\r\n\t " + _GOOD + b" \n", None),
        HostileCase("trailing comma", _GOOD[:-1] + b",}", _J),
        HostileCase("comment", b"/* hi */" + _GOOD, _J),
        HostileCase("single quotes", _GOOD.replace(b'"', b"'"), _J),
        HostileCase("two documents", _GOOD + _GOOD, _J),
        HostileCase("truncated document", _GOOD[:-1], _J),
        HostileCase("JSON array of applications", b"[" + _GOOD + b"]", _V),
        HostileCase("JSON null", b"null", _V),
        HostileCase("JSON string", b'"app-1"', _V),
        HostileCase("submitted_at not a date", valid_json(submitted_at="0000-00-00"), _V),
        HostileCase(
            "submitted_at bad offset", valid_json(submitted_at="2024-01-01T00:00+99:99"), _V
        ),
        HostileCase("submitted_at as a number", with_raw("submitted_at", b"1e300"), _V),
        HostileCase("submitted_at 1000 nines", valid_json(submitted_at="9" * 1000), _V),
    ]


HOSTILE_CORPUS: Final[tuple[HostileCase, ...]] = tuple(_cases())
"""Every case; names are unique."""
