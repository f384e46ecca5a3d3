"""The sample drawn with DuckDB's approximate keys first (reports/build.py _draw) is the sample
of the documented method over every change (reports/sample.py draw), and falls back to it
when the approximate keys cannot settle the draw."""

from __future__ import annotations

import duckdb
import pytest

from reports import sample as sampling
from reports.build import _draw


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("""CREATE TEMP TABLE r_changes AS
        SELECT 'prm-' || range AS change_id,
               CASE WHEN range % 40 = 0 THEN 'emergency' ELSE 'permit' END AS kind,
               TIMESTAMPTZ '2030-01-01 00:00:00+00' + to_minutes(range * 7) AS changed_at
        FROM range(5000)""")
    return con


def everything(con, seed, size):
    rows = con.execute("SELECT change_id, kind, dayofweek(changed_at) IN (0, 6) "
                       "FROM r_changes").fetchall()
    return sampling.draw(rows, seed, size)


@pytest.mark.parametrize("seed,size", [("a", 1), ("auditor-42", 25), ("0f3c", 60),
                                       ("b", 2600), ("c", 5000), ("d", 0)])
def test_the_preselected_sample_is_the_sample_over_every_change(con, seed, size):
    assert _draw(con, seed, size) == everything(con, seed, size)


def test_when_the_approximate_keys_cannot_settle_it_every_change_is_drawn(con, monkeypatch):
    calls = []
    real = sampling.draw_preselected

    def unsettled(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return None

    monkeypatch.setattr(sampling, "draw_preselected", unsettled)
    assert _draw(con, "auditor-42", 25) == everything(con, "auditor-42", 25)
    assert calls and calls[0] == everything(con, "auditor-42", 25)
