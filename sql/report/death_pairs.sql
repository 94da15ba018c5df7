{#- For each pair of death sources, patients recorded by both, split by whether the two sources
    share at least one death date (same_date 1) or give only different dates (0). -#}
SELECT first_source, second_source, same_date, COUNT(*) AS patients
FROM (
    SELECT a.patient_id, a.source AS first_source, b.source AS second_source,
        MAX(CASE WHEN a.death_date = b.death_date THEN 1 ELSE 0 END) AS same_date
    FROM deaths_by_source AS a
    JOIN deaths_by_source AS b ON a.patient_id = b.patient_id AND a.source < b.source
    GROUP BY a.patient_id, a.source, b.source
) AS p
GROUP BY first_source, second_source, same_date
ORDER BY first_source, second_source, same_date, patients
