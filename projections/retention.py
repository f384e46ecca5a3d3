"""Retention: delete projection rows older than their retention period. The ledger is never
touched (it is append-only; erasure there is crypto-shredding, not deletion).

A row's retention period is its task's: the longest `retention_days` of the task's decisions
(-1, legal hold, keeps it for ever). Rows reach their task directly (`task_id`) or through their
permit (`permit_id` -> permit_requests.task_id). Rows with no task get their table's default
below; events with no typed row (unknown types) get `EVENTS_DEFAULT_DAYS`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

KEEP = -1  # never deleted: legal hold, and what verification or erasure proofs need

# Classes from certification-facts §10.2: operational 90 d, security / regulatory 2555 d,
# diagnostic 30 d. Used only when a row cannot be tied to a task's decision.
DEFAULT_RETENTION_DAYS: dict[str, int] = {
    "tasks": 90, "decisions": 90, "factors": 90, "minimums": 90, "task_blocks": 90,
    "reviews": 365,
    "permit_requests": 2555, "permit_transitions": 2555, "approvals": 2555,  # auth.permit.*
    "permit_refusals": 2555, "permit_followups": 2555, "authorization_requests": 90,
    "operations": 90, "executions": 90, "metric_samples": 30, "alerts": 90,
    "rollbacks": 2555, "escalations": 2555, "violations": 2555, "overrides": 2555,
    "rejected_input": 365,
    "approvers": KEEP, "keys": KEEP, "erasures": KEEP, "ledger_truncations": KEEP,
}
EVENTS_DEFAULT_DAYS = 2555  # unknown types: the longest non-hold class

# How each table's rows reach a task: (task_id expression, permit_id expression).
LINKS: dict[str, tuple[str, str]] = {
    "tasks": ("task_id", "NULL"), "decisions": ("task_id", "NULL"),
    "factors": ("task_id", "NULL"), "minimums": ("task_id", "NULL"),
    "task_blocks": ("task_id", "NULL"), "reviews": ("task_id", "NULL"),
    "permit_requests": ("task_id", "permit_id"), "permit_transitions": ("NULL", "permit_id"),
    "approvals": ("NULL", "permit_id"), "operations": ("NULL", "permit_id"),
    "permit_refusals": ("NULL", "permit_id"), "permit_followups": ("NULL", "permit_id"),
    "authorization_requests": ("NULL", "permit_id"),
    "executions": ("task_id", "permit_id"), "rollbacks": ("NULL", "permit_id"),
    "violations": ("NULL", "permit_id"),
    "escalations": ("NULL", "CASE WHEN subject_kind = 'permit' THEN subject_id END"),
    "metric_samples": ("NULL", "key"),  # samples are keyed by permit (or deployment) id
    "alerts": ("NULL", "key"), "overrides": ("NULL", "NULL"),
    "rejected_input": ("NULL", "NULL"), "approvers": ("NULL", "NULL"),
    "keys": ("NULL", "NULL"), "erasures": ("NULL", "NULL"),
    "ledger_truncations": ("NULL", "NULL"),
}

EXPIRED_SQL = """
CREATE OR REPLACE TEMP TABLE _expired AS
WITH task_days AS (
    SELECT task_id, CASE WHEN bool_or(retention_days < 0) THEN -1
                         ELSE max(retention_days) END AS days
    FROM decisions WHERE retention_days IS NOT NULL GROUP BY task_id
), permit_task AS (
    SELECT permit_id, min(task_id) AS task_id FROM permit_requests
    WHERE task_id IS NOT NULL GROUP BY permit_id
), links AS ({links}
), row_days AS (
    SELECT l.event_id, coalesce(td.days, d.days) AS days
    FROM links l
    LEFT JOIN permit_task pt ON l.task_id IS NULL AND pt.permit_id = l.permit_id
    LEFT JOIN task_days td ON td.task_id = coalesce(l.task_id, pt.task_id)
    JOIN (VALUES {defaults}) AS d(tbl, days) ON d.tbl = l.tbl
), event_days AS (
    SELECT event_id, CASE WHEN bool_or(days < 0) THEN -1 ELSE max(days) END AS days
    FROM row_days GROUP BY event_id
)
SELECT e.event_id FROM events e LEFT JOIN event_days x USING (event_id)
WHERE coalesce(x.days, {events_default}) >= 0
  AND e.occurred_at < ?::TIMESTAMPTZ - to_days(CAST(coalesce(x.days, {events_default}) AS INTEGER))
"""


def expired_sql() -> str:
    links = "\n    UNION ALL ".join(
        f"SELECT event_id, '{table}' AS tbl, {task}::VARCHAR AS task_id, "
        f"({permit})::VARCHAR AS permit_id FROM {table}"
        for table, (task, permit) in LINKS.items())
    defaults = ", ".join(f"('{table}', {days})" for table, days in DEFAULT_RETENTION_DAYS.items())
    return EXPIRED_SQL.format(links=links, defaults=defaults, events_default=EVENTS_DEFAULT_DAYS)


def apply_retention_to(con: duckdb.DuckDBPyConnection, now: datetime) -> dict[str, int]:
    """Delete expired rows from every projected table, in one transaction. Returns the number
    of rows deleted per table (tables with none are left out)."""
    if now.tzinfo is None:
        raise ValueError("now needs a time zone")
    deleted: dict[str, int] = {}
    con.begin()
    try:
        con.execute(expired_sql(), [now])
        for table in [*LINKS, "events"]:
            row = con.execute(
                f"DELETE FROM {table} WHERE event_id IN (SELECT event_id FROM _expired)"
            ).fetchone()
            if row and row[0]:
                deleted[table] = int(row[0])
        con.execute("DROP TABLE _expired")
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return deleted


def apply_retention(db_path: Path | str, now: datetime) -> dict[str, int]:
    """Retention on a projection file that no other process has open for writing."""
    from projections.projector import _connect, ensure_schema

    con = _connect(db_path)
    try:
        ensure_schema(con)
        return apply_retention_to(con, now)
    finally:
        con.close()
