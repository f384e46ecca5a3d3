"""Canonical JSON bytes of an event: RFC 8785 (JCS), with a fast path that is byte-identical.

JCS = keys sorted by UTF-16 code units, no insignificant whitespace, strings as in ECMAScript
JSON.stringify (only `"`, `\\` and U+0000..U+001F escaped; \\b \\t \\n \\f \\r short forms, the
rest as lowercase \\u00xx), numbers as ECMAScript Number-to-string, output in UTF-8.

Fast path: the C encoder of the `json` module with sort_keys and compact separators produces
exactly those bytes for dict / list / str / int / bool / None as long as (a) every dict key is
a str, (b) no float occurs, (c) every int is within +-(2**53 - 1), and (d) no character outside
the BMP occurs (Python sorts keys by code point, JCS by UTF-16 unit; they agree on the BMP).
(a)-(c) are checked by walking the value before encoding (exact types only: subclasses take
the slow path), (d) on the output. Values with floats take a middle path: floats are swapped
for unguessable placeholders, the C encoder runs, and each placeholder is replaced by the
float's ECMAScript form (`es_number`). Anything else goes to the reference encoder `rfc8785`.
tests/test_ledger_canonical.py checks the equivalence with hypothesis.
"""

from __future__ import annotations

import math
import re
import secrets
from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
from typing import Any

import rfc8785

from ledger.errors import LedgerError

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_MAX_INT = 2**53


def _simple(obj: Any) -> bool:
    """True if `obj` holds only str-keyed dicts, lists, str, safe ints, bool and None."""
    t = type(obj)
    if t is dict:
        values: Any = obj.values()
        for key in obj:
            if type(key) is not str:
                return False
    elif t is list:
        values = obj
    else:
        return t is str or obj is None or t is bool or (t is int and -_MAX_INT < obj < _MAX_INT)
    for v in values:
        tv = type(v)
        if tv is str or v is None or tv is bool:
            continue
        if tv is int:
            if -_MAX_INT < v < _MAX_INT:
                continue
            return False
        if not _simple(v):
            return False
    return True


def es_number(x: float) -> str:
    """ECMAScript Number::toString of a finite double (what JCS prints)."""
    if not math.isfinite(x):
        raise ValueError("NaN and infinities have no JSON form")
    if x == 0:
        return "0"
    if x < 0:
        return "-" + es_number(-x)
    mantissa, _, exp = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + int(exp or 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    head = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{sign}{abs(e)}"


_NONCE = secrets.token_hex(16)


def _swap_floats(obj: Any, floats: list[str]) -> Any:
    """A copy of `obj` with floats replaced by placeholders; raises _NotSimple otherwise."""
    t = type(obj)
    if t is float:
        floats.append(es_number(obj))
        return f"\x00{_NONCE}{len(floats) - 1}\x00"
    if t is dict:
        out = {}
        for k, v in obj.items():
            if type(k) is not str:
                raise _NotSimple
            out[k] = _swap_floats(v, floats)
        return out
    if t is list:
        return [_swap_floats(v, floats) for v in obj]
    if t is str or obj is None or t is bool or (t is int and -_MAX_INT < obj < _MAX_INT):
        return obj
    raise _NotSimple


class _NotSimple(Exception):
    pass


def _encode_with_floats(obj: Any) -> str:
    floats: list[str] = []
    text = _encode(_swap_floats(obj, floats))
    parts = text.split(f'"\\u0000{_NONCE}')
    if len(parts) - 1 != len(floats):
        raise _NotSimple  # pragma: no cover - the nonce is unguessable
    out = [parts[0]]
    for part in parts[1:]:
        number, _, rest = part.partition('\\u0000"')
        out.append(floats[int(number)])
        out.append(rest)
    return "".join(out)


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


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value. Raises LedgerError if it has none."""
    try:
        text = _encode(obj) if _simple(obj) else _encode_with_floats(obj)
        if text.isascii() or _ASTRAL.search(text) is None:
            return text.encode("utf-8")
    except (_NotSimple, TypeError, ValueError, RecursionError, UnicodeEncodeError):
        pass
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise LedgerError(
            f"event is not canonical JSON: {exc}", code="ledger.invalid_event"
        ) from exc
