{#- cmuc (RULES.md, CMU-C): a patient is CMU-C for a whole calendar year once a claim of that year
    is flagged BEN_CMU_TOP = 1. -#}
SELECT DISTINCT patient_id, CAST(year(event_date) AS INTEGER) AS year
FROM dcir
WHERE item = 'prestation' AND BEN_CMU_TOP = {{ cmuc_value }}
