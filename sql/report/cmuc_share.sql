{#- Per year of the care period: patients with a care event or a CMU-C year (a CMU-C year comes from
    a claim, some of which are not modelled care events: counting them keeps the share <= 100 %), and
    those of them in cmuc. -#}
{%- from "report/_care.sql" import care_years -%}
SELECT c.year, COUNT(*) AS patients_with_care, CAST(SUM(CASE WHEN m.patient_id IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS cmuc_patients
FROM (
    SELECT DISTINCT patient_id, CAST(year AS INTEGER) AS year
    FROM ({{ care_years() }} UNION ALL SELECT patient_id, year FROM cmuc) AS e
    WHERE year BETWEEN {{ first_year }} AND {{ last_year }}
) AS c
LEFT JOIN (SELECT DISTINCT patient_id, CAST(year AS INTEGER) AS year FROM cmuc) AS m
    ON m.patient_id = c.patient_id AND m.year = c.year
GROUP BY c.year
ORDER BY c.year, patients_with_care, cmuc_patients
