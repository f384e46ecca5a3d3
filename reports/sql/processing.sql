-- GDPR Art. 30: the record of processing activities with personal data (PII or PHI, or a
-- change the decision tags GDPR), one activity per set of services, from the period's changes.
CREATE OR REPLACE TEMP TABLE r_processing AS
SELECT coalesce(nullif(array_to_string(list_sort(coalesce(services, []::VARCHAR[])), ', '), ''),
                '(no service named)') AS activity,
       list_sort(list_distinct(flatten(list(all_classes)))) AS data_categories,
       list_sort(list_distinct(list(justification) FILTER (WHERE justification IS NOT NULL)))[1:5]
           AS purposes,
       list_sort(list_distinct(flatten(list(coalesce(operations, []::VARCHAR[])))))
           AS operations,
       list_sort(list_distinct(list(worker_id) FILTER (WHERE worker_id IS NOT NULL)))
           AS recipients,
       list_sort(list_distinct(flatten(list(coalesce(regions, []::VARCHAR[]))))) AS regions,
       list_sort(list_distinct(list(environment) FILTER (WHERE environment IS NOT NULL)))
           AS environments,
       max(retention_days) AS retention_days, min(level) AS min_level, max(level) AS max_level,
       count(*) AS changes, min(changed_at) AS first_seen, max(changed_at) AS last_seen,
       list(change_id ORDER BY changed_at, change_id)[1:20] AS example_changes
FROM r_changes
WHERE list_has_any(all_classes, ['pii', 'phi']) OR tagged
GROUP BY activity
ORDER BY activity;
