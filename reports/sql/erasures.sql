-- GDPR Art. 17: erasures in the period (crypto-shredding: the subject's key is destroyed, the
-- ledger keeps the ciphertext). The subject is shown as the first 16 hex digits of SHA-256 of
-- its name: the report must not re-publish the personal data it proves erased.
CREATE OR REPLACE TEMP TABLE r_erasures_in AS
SELECT e.occurred_at, left(sha256(e.data_subject), 16) AS subject_ref, e.requested_by,
       e.legal_basis, e.event_id, e.partition, e.ledger_index
FROM r_erasures e, _params p
WHERE e.occurred_at >= {start} AND e.occurred_at < {end}
ORDER BY e.occurred_at, e.event_id;
