"""A report's big parts (its lines, its evidence entries) kept as the JSON text they were built
as, parsed into Python objects only when something reads them.

`JSONList(text)` is a `list` and `JSONDict(text)` a `dict`: every method parses the text first
(once), so code that reads them sees ordinary lists and dicts. `raw` is the text while nothing
has touched the value (after that the value may have been changed: None). Only
`reports.signature.dumps` knows to write `raw` as it is; the standard `json` encoder reads a
list's or dict's storage directly and would see nothing, so a document holding these must be
written with `reports.signature.dumps` (or `reports.render`), never `json.dumps`. Reports are
built lazy only when asked (`ReportContext(lazy=True)`: the CLI, the server, the benchmark).
"""

from __future__ import annotations

import json
from typing import Any

_LIST_METHODS = (
    "__len__", "__iter__", "__getitem__", "__setitem__", "__delitem__", "__contains__",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__repr__", "__reversed__",
    "__add__", "__radd__", "__iadd__", "__mul__", "__rmul__", "__imul__", "__reduce_ex__",
    "__copy__", "__deepcopy__", "append", "extend", "insert", "pop", "remove", "index", "count",
    "sort", "reverse", "clear", "copy",
)
_DICT_METHODS = (
    "__len__", "__iter__", "__getitem__", "__setitem__", "__delitem__", "__contains__",
    "__eq__", "__ne__", "__repr__", "__reversed__", "__or__", "__ror__", "__ior__",
    "__reduce_ex__", "__copy__", "__deepcopy__", "keys", "values", "items", "get", "pop",
    "popitem", "setdefault", "update", "clear", "copy",
)


class _Lazy:
    """The text and its one parse, shared by JSONList and JSONDict (slots stay on them: list
    and dict lay out their instances differently)."""

    __slots__ = ()
    _text: str | None

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    @property
    def raw(self) -> str | None:
        return self._text

    def _load(self) -> None:
        text = getattr(self, "_text", None)
        if text is not None:
            self._text = None
            self._fill(json.loads(text))

    def _fill(self, value: Any) -> None:
        raise NotImplementedError

    __hash__ = None  # type: ignore[assignment]


class JSONList(_Lazy, list):  # type: ignore[type-arg]
    __slots__ = ("_text",)

    def _fill(self, value: Any) -> None:
        list.extend(self, value)


class JSONDict(_Lazy, dict):  # type: ignore[type-arg]
    __slots__ = ("_text",)

    def _fill(self, value: Any) -> None:
        dict.update(self, value)


def _loading(base: type, name: str) -> Any:
    method = getattr(base, name, None)
    if method is None:
        return None

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._load()
        for value in args:  # comparing two lazy values: both parsed
            if isinstance(value, _Lazy):
                value._load()
        return method(self, *args, **kwargs)

    call.__name__ = name
    return call


for _name in _LIST_METHODS:
    _method = _loading(list, _name)
    if _method is not None:
        setattr(JSONList, _name, _method)
for _name in _DICT_METHODS:
    _method = _loading(dict, _name)
    if _method is not None:
        setattr(JSONDict, _name, _method)


def raw_of(value: Any) -> str | None:
    """The JSON text of a lazy value nothing has read yet (else None)."""
    return value.raw if isinstance(value, _Lazy) else None


def load(value: Any) -> Any:
    """Parse a lazy value now (for code that hands it to the standard json encoder)."""
    if isinstance(value, _Lazy):
        value._load()
    return value
