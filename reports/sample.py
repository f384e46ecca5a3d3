"""The testers' sample: reproducible from the seed alone, weighted to the changes auditors
look at first (emergency changes, weekend changes; PCAOB practice for SOX ITGC testing).

Method (anyone can redo it in any language): for each change, u = (int(SHA-256(
"<seed>:<change_id>" as UTF-8), 16) + 0.5) / 2**256, w = 3 for an emergency change, 2 for a
change made on a Saturday or Sunday (UTC), else 1; key = ln(u) / w. The sample is the `size`
changes with the largest keys (weighted sampling without replacement, Efraimidis-Spirakis),
ranked by key. The default seed is taken from the report's signed checkpoints, so whoever
makes the report cannot choose it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

METHOD = ("weighted without replacement (Efraimidis-Spirakis): key = ln(u)/w, u = "
          "(int(sha256('<seed>:<change_id>'), 16) + 0.5) / 2**256, w = 3 emergency, 2 weekend "
          "(UTC), else 1; the sample is the largest keys")


def weight(kind: str, weekend: bool) -> int:
    if kind == "emergency":
        return 3
    return 2 if weekend else 1


def key(seed: str, change_id: str, w: int) -> float:
    digest = int(hashlib.sha256(f"{seed}:{change_id}".encode()).hexdigest(), 16)
    return math.log((digest + 0.5) / 2**256) / w


def default_seed(checkpoints: Iterable[dict[str, Any]]) -> str:
    text = "\n".join(f"{c['partition']}:{c['size']}:{c['root']}"
                     for c in sorted(checkpoints, key=lambda c: c["partition"]))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def draw(changes: Iterable[tuple[str, str, bool]], seed: str, size: int
         ) -> list[dict[str, Any]]:
    """changes: (change_id, kind, made on a weekend). Returns [{rank, change_id, weight,
    key}]."""
    scored = []
    for change_id, kind, weekend in changes:
        w = weight(kind, weekend)
        scored.append((key(seed, change_id, w), change_id, w))
    scored.sort(key=lambda x: (-x[0], x[1]))
    return [{"rank": rank, "change_id": change_id, "weight": w, "key": k}
            for rank, (k, change_id, w) in enumerate(scored[:max(size, 0)], start=1)]


# How far an approximate key (sql/sample.sql: the first 64 bits of the hash, in floating point)
# may be from the exact one: for u >= 2**-32 well under 1e-9; a change whose u is smaller has a
# key below ln(2**-31) / 3 > -7.2, so a sample whose keys are all above -7 never needs it.
TOLERANCE = 1e-9
FLOOR = -7.0


def draw_preselected(candidates: list[tuple[str, str, bool]], bound: float, seed: str,
                     size: int) -> list[dict[str, Any]] | None:
    """The exact draw among the changes with the largest approximate keys, when it is the draw
    over every change: every key it keeps must clear `bound` (the largest approximate key of
    the changes left out) by more than an approximate key can be off. None when it does not
    (then draw over every change)."""
    drawn = draw(candidates, seed, size)
    if len(drawn) < size:
        return None
    low = drawn[-1]["key"] if drawn else 0.0
    return drawn if low > bound + TOLERANCE and low > FLOOR else None
