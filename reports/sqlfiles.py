"""The SQL of the reports lives in reports/sql/*.sql (readable and runnable by auditors on
their own copy of the DuckDB file); this module loads it."""

from __future__ import annotations

from functools import cache
from importlib import resources

import duckdb


@cache
def text(name: str) -> str:
    return resources.files("reports").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def statements(name: str) -> list[str]:
    """The statements of a file (split at a `;` that ends a line; comments kept)."""
    out, current = [], []
    for line in text(name).splitlines():
        current.append(line)
        if line.rstrip().endswith(";"):
            statement = "\n".join(current).strip()
            if any(s.strip() and not s.strip().startswith("--") for s in current):
                out.append(statement)
            current = []
    return out


def run(con: duckdb.DuckDBPyConnection, name: str, values: dict[str, str] | None = None
        ) -> None:
    """Run a file's statements; `values` fills its {placeholders} (trusted text only)."""
    for statement in statements(name):
        for key, value in (values or {}).items():
            statement = statement.replace("{" + key + "}", value)
        con.execute(statement)


@cache
def named(name: str) -> dict[str, str]:
    """Queries of a file marked `-- name: x` (each one statement)."""
    out: dict[str, str] = {}
    key = None
    lines: list[str] = []
    for line in text(name).splitlines():
        if line.startswith("-- name:"):
            if key is not None:
                out[key] = "\n".join(lines).strip().rstrip(";")
            key, lines = line.split(":", 1)[1].strip(), []
        elif key is not None:
            lines.append(line)
    if key is not None:
        out[key] = "\n".join(lines).strip().rstrip(";")
    return out
