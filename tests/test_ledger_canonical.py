"""Canonical bytes: our fast encoder equals RFC 8785 (the `rfc8785` package) byte for byte."""

from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_json
from ledger.errors import LedgerError

# Any text, including non-BMP characters, control characters and escapes.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
envelopes = st.fixed_dictionaries(
    {
        "event_id": st.uuids().map(str),
        "type": st.sampled_from(["task.certified", "permit.approved", "rollback.triggered"]),
        "schema_version": st.integers(1, 3),
        "occurred_at": st.just("2026-11-26T10:00:00.123456Z"),
        "producer": text,
        "subject": text,
        "correlation_id": st.none() | st.uuids().map(str),
        "causation_id": st.none() | st.uuids().map(str),
        "payload": st.dictionaries(text, json_values, max_size=6),
    }
)


@settings(max_examples=150, deadline=None)
@given(envelopes)
def test_event_envelopes_encode_exactly_as_rfc8785(event: dict) -> None:
    assert canonical_json(event) == rfc8785.dumps(event)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_encodes_exactly_as_rfc8785(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"\U0001f600": 1, "\uffff": 2, "a": 3}, id="non-BMP keys sort by UTF-16"),
        pytest.param({"n": 2**53 - 1, "m": -(2**53) + 1}, id="largest safe ints"),
        pytest.param({"f": [1.0, -0.0, 1e21, 1e-7, 0.1, 5e-324]}, id="floats as ECMAScript"),
        pytest.param({"s": '"\\\x00\x1f\x7f\u2028é'}, id="escapes and raw non-ASCII"),
        pytest.param({"s": "1.5e+3 true"}, id="number-like text inside strings"),
    ],
)
def test_tricky_values_encode_exactly_as_rfc8785(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"n": 2**53}, id="int beyond 2**53"),
        pytest.param({"f": float("nan")}, id="NaN"),
        pytest.param({"s": "\ud800"}, id="lone surrogate"),
        pytest.param({"b": b"bytes"}, id="bytes"),
    ],
)
def test_values_without_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(LedgerError) as err:
        canonical_json(value)
    assert err.value.code == "ledger.invalid_event"


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_print_as_ecmascript_numbers(x: float) -> None:
    from ledger.canonical import es_number

    assert es_number(x).encode() == rfc8785.dumps(x)


@settings(max_examples=100, deadline=None)
@given(
    envelopes, st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=5)
)
def test_envelopes_with_metric_floats_encode_exactly_as_rfc8785(event: dict, values: list) -> None:
    event = {**event, "payload": {**event["payload"], "values": values, "ratio": values[0]}}
    assert canonical_json(event) == rfc8785.dumps(event)
