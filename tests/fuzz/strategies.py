"""Hypothesis strategies for record values: valid applications, and everything else.

``hostile_values()`` mixes raw bytes, the explicit corpus, valid applications, applications
with one field replaced by an arbitrary JSON value, byte-level mutations of valid JSON and
text full of Unicode edge cases, so one strategy reaches every branch of the decoder.
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson
from hypothesis import strategies as st

from contracts import FEATURE_COLUMNS
from tests.fuzz.corpus import HOSTILE_CORPUS, with_raw

_MAX_AMOUNT: Final = 100_000_000
_SMALL_CORPUS: Final = tuple(
    case.value for case in HOSTILE_CORPUS if case.value is None or len(case.value) <= 64 * 1024
)

# Characters that break naive text handling: controls, BOM, NUL, bidi controls,
# zero-width, combining marks, noncharacters, astral plane, and lone surrogates.
_EDGE_CHARACTERS: Final = (
    "\x00\x01\x1f\x7f\x85\ufeff\u202e\u202d\u200f\u200e\u2066\u2069\u200b\u200d"
    "\u0301\u034f\ufffe\uffff\U0001f600\U0010ffff\ud800\udc00\udbff\udfff\u2028\u2029"
)

_amounts = st.floats(min_value=-_MAX_AMOUNT, max_value=_MAX_AMOUNT, allow_nan=False)
_positive = st.floats(min_value=0, max_value=_MAX_AMOUNT, allow_nan=False)
_status = st.integers(-2, 9)


def valid_payloads() -> st.SearchStrategy[dict[str, Any]]:
    """Dicts that satisfy the contract, values spread over each field's whole domain."""
    fields: dict[str, st.SearchStrategy[Any]] = {
        "application_id": st.text(
            st.characters(exclude_categories=("Cs",)), min_size=1, max_size=128
        ),
        "limit_bal": st.floats(min_value=0, max_value=_MAX_AMOUNT, exclude_min=True),
        "sex": st.integers(1, 2),
        "education": st.integers(0, 6),
        "marriage": st.integers(0, 3),
        "age": st.integers(18, 120),
    }
    for name in FEATURE_COLUMNS:
        if name.startswith("pay_amt"):
            fields[name] = _positive
        elif name.startswith("bill_amt"):
            fields[name] = _amounts
        elif name.startswith("pay_"):
            fields[name] = _status
    return st.fixed_dictionaries(fields)


def json_values() -> st.SearchStrategy[Any]:
    """Arbitrary JSON-ish Python values, including NaN, infinities and 1000-digit integers."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**1000), max_value=10**1000),
        st.floats(),  # NaN and ±inf included: json.dumps writes them as literals
        st.text(),
        st.text(st.sampled_from(_EDGE_CHARACTERS)),
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=12,
    )


def _dump(value: Any) -> bytes:
    # ensure_ascii escapes lone surrogates as \udXXX, the hostile form we want to test.
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def one_field_replaced(draw: st.DrawFn) -> bytes:
    """A valid application whose one field (or an extra one) holds an arbitrary JSON value."""
    payload = draw(valid_payloads())
    name = draw(st.sampled_from([*payload, "submitted_at", "extra_field"]))
    changed = {**payload, name: "__raw_json_value__"}
    raw = _dump(draw(json_values()))
    return orjson.dumps(changed).replace(b'"__raw_json_value__"', raw, 1)


@st.composite
def mutated_json(draw: st.DrawFn) -> bytes:
    """Valid application JSON with a few bytes inserted, deleted or overwritten."""
    data = bytearray(orjson.dumps(draw(valid_payloads())))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        chunk = draw(st.binary(min_size=1, max_size=4))
        action = draw(st.sampled_from(("insert", "delete", "overwrite")))
        if action == "insert":
            data[position:position] = chunk
        elif action == "delete":
            del data[position : position + len(chunk)]
        else:
            data[position : position + len(chunk)] = chunk
    return bytes(data)


@st.composite
def edge_text_ids(draw: st.DrawFn) -> bytes:
    """A valid application whose id is edge-case text, escaped or raw, UTF-8 or not."""
    text = draw(st.text(st.sampled_from(_EDGE_CHARACTERS + "az09-"), min_size=1, max_size=20))
    how = draw(st.sampled_from(("escaped", "raw-utf8", "surrogatepass", "latin-1")))
    if how == "escaped":
        body = json.dumps(text).encode()
    elif how == "raw-utf8":
        body = b'"' + text.encode("utf-8", "replace") + b'"'
    elif how == "surrogatepass":
        body = b'"' + text.encode("utf-8", "surrogatepass") + b'"'
    else:
        body = b'"' + text.encode("latin-1", "replace") + b'"'
    return with_raw("application_id", body)


def hostile_values() -> st.SearchStrategy[bytes | None]:
    """Any record value: valid, nearly valid, or garbage."""
    return st.one_of(
        st.binary(max_size=512),
        st.sampled_from(_SMALL_CORPUS),
        valid_payloads().map(orjson.dumps),
        one_field_replaced(),
        mutated_json(),
        edge_text_ids(),
    )
