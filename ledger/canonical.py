"""Canonical JSON bytes of an event: RFC 8785 (JCS), with a fast path that is byte-identical.

JCS = keys sorted by UTF-16 code units, no insignificant whitespace, strings as in ECMAScript
JSON.stringify (only `"`, `\\` and U+0000..U+001F escaped; \\b \\t \\n \\f \\r short forms, the
rest as lowercase \\u00xx), numbers as ECMAScript Number-to-string, output in UTF-8.

Fast path: the C encoder of the `json` module with sort_keys and compact separators produces
exactly those bytes for str / int / bool / None / list / dict as long as (a) no float occurs,
(b) every int has at most 15 digits (so |i| < 2**53), and (c) no character outside the BMP
occurs (Python sorts keys by code point, JCS by UTF-16 unit; they agree on the BMP). The output
is checked for (a)-(c) afterwards; anything else goes to the reference encoder `rfc8785`.
tests/test_ledger_canonical.py checks the equivalence with hypothesis.
"""

from __future__ import annotations

import re
from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
from typing import Any

import rfc8785

from ledger.errors import LedgerError

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_LONG_INT = re.compile(r"\d{16}")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _no_default(obj: Any) -> Any:
    raise TypeError(f"not JSON: {type(obj).__name__}")


if c_make_encoder is not None:  # CPython
    _c_encode = c_make_encoder(
        None, _no_default, c_encode_basestring, None, ":", ",", True, False, False
    )

    def _encode(obj: Any) -> str:
        return "".join(_c_encode(obj, 0))

else:  # pragma: no cover - other interpreters
    import json

    def _encode(obj: Any) -> str:
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )


def _fast_path_ok(text: str) -> bool:
    """True when `text` (C-encoder output) is certainly equal to JCS of the same value."""
    if "\\" in text:
        outside = _STRING.sub("", text)
    else:
        outside = "".join(text.split('"')[::2])
    # Floats print with "." or an exponent sign; "true"/"false" never meet "e+"/"e-".
    if "." in outside or "e+" in outside or "e-" in outside or _LONG_INT.search(outside):
        return False
    return text.isascii() or _ASTRAL.search(text) is None


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value. Raises LedgerError if it has none."""
    try:
        text = _encode(obj)
        if _fast_path_ok(text):
            return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
        pass
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise LedgerError(
            f"event is not canonical JSON: {exc}", code="ledger.invalid_event"
        ) from exc
