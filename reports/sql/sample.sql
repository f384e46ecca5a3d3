-- The sample's candidates (reports/sample.py): the changes in the order of an approximate key,
-- the method's key computed from the first 64 bits of the hash in DuckDB (one pass, in
-- parallel), largest first. Python recomputes the exact keys of the first few (the method's
-- own arithmetic) and keeps them only if they clear the approximate key of the first change
-- left out; else it draws over every change. Parameters: the seed, how many.

-- name: preselect
SELECT change_id, kind, weekend, approx FROM (
    SELECT change_id, kind, dayofweek(changed_at) IN (0, 6) AS weekend,
           ln((('0x' || left(sha256(?::VARCHAR || ':' || change_id), 16))::UBIGINT::DOUBLE
               + 0.5) / 18446744073709551616.0)
           / CASE WHEN kind = 'emergency' THEN 3 WHEN dayofweek(changed_at) IN (0, 6) THEN 2
                  ELSE 1 END AS approx
    FROM r_changes)
ORDER BY approx DESC, change_id
LIMIT ?;
