"""Export entries as JSON Lines or Parquet, streaming (memory stays flat).

JSONL: one object per entry, keys in this order: partition, index, kind, leaf_hash, prev_hash
(hex), event. `event` is written as the exact canonical bytes that were hashed.
Parquet: the same, with event_id, type and occurred_at pulled out as columns and the event as
its canonical JSON text (DuckDB: read_parquet(...), json_extract(event, '$.payload...')).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ledger.layout import partition_dir, read_meta
from ledger.reader import iter_raw

PARQUET_BATCH = 32_768


def _partitions(directory: Path, partition: int | None) -> list[int]:
    count = int(read_meta(directory)["partitions"])
    return list(range(count)) if partition is None else [partition]


def _rows(
    directory: Path, partition: int | None, start: int, end: int | None
) -> Iterator[tuple[int, int, int, bytes, bytes, bytes]]:
    for p in _partitions(directory, partition):
        for index, digest, kind, prev, body in iter_raw(partition_dir(directory, p), p, start):
            if end is not None and index >= end:
                break
            yield p, index, kind, digest, prev, body


def export_jsonl(
    directory: Path,
    out: Path | IO[str],
    *,
    partition: int | None = None,
    start: int = 0,
    end: int | None = None,
) -> int:
    """Write entries [start, end) of one or all partitions to `out`; return how many."""
    directory = Path(directory)
    if isinstance(out, (str, Path)):
        with open(out, "w", encoding="utf-8") as handle:
            return _write_jsonl(handle, _rows(directory, partition, start, end))
    return _write_jsonl(out, _rows(directory, partition, start, end))


def _write_jsonl(handle: IO[str], rows: Iterator[tuple[int, int, int, bytes, bytes, bytes]]) -> int:
    count = 0
    for p, index, kind, digest, prev, body in rows:
        handle.write(
            f'{{"partition":{p},"index":{index},"kind":{kind},'
            f'"leaf_hash":"{digest.hex()}","prev_hash":"{prev.hex()}",'
            f'"event":{body.decode("utf-8")}}}\n'
        )
        count += 1
    return count


def export_parquet(
    directory: Path,
    out: Path,
    *,
    partition: int | None = None,
    start: int = 0,
    end: int | None = None,
) -> int:
    """Write entries to a Parquet file (row groups of PARQUET_BATCH); return how many."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("partition", pa.int32()),
            ("index", pa.int64()),
            ("kind", pa.int8()),
            ("leaf_hash", pa.string()),
            ("prev_hash", pa.string()),
            ("event_id", pa.string()),
            ("type", pa.string()),
            ("occurred_at", pa.string()),
            ("event", pa.string()),
        ]
    )
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    count = 0
    with pq.ParquetWriter(str(out), schema, compression="zstd") as writer:
        for p, index, kind, digest, prev, body in _rows(Path(directory), partition, start, end):
            text = body.decode("utf-8")
            event = json.loads(text)
            columns["partition"].append(p)
            columns["index"].append(index)
            columns["kind"].append(kind)
            columns["leaf_hash"].append(digest.hex())
            columns["prev_hash"].append(prev.hex())
            columns["event_id"].append(event.get("event_id"))
            columns["type"].append(_str(event.get("type")))
            columns["occurred_at"].append(_str(event.get("occurred_at")))
            columns["event"].append(text)
            count += 1
            if len(columns["index"]) >= PARQUET_BATCH:
                writer.write_table(pa.table(columns, schema=schema))
                columns = {name: [] for name in schema.names}
        if columns["index"] or count == 0:
            writer.write_table(pa.table(columns, schema=schema))
    return count


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None if value is None else str(value)
