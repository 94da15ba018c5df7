{#- costs_patient_year (medico-economic model): one row per patient and calendar year with a cost:
    reimbursed amounts by category (outpatient categories, hospital_<source>, hospital_extras) and
    their total. Outpatient claims and extras count in the year of their date, hospital episodes in
    the year of their end (PMSI files and valuations are by discharge year). -#}
WITH amounts AS (
    SELECT patient_id, CAST(year(date) AS INTEGER) AS yr, category AS col, reimbursed AS amount FROM costs_outpatient
    UNION ALL
    SELECT patient_id, CAST(year(end_date) AS INTEGER), concat('hospital_', lower(source)), reimbursed FROM costs_hospital_stays
    UNION ALL
    SELECT patient_id, CAST(year(date) AS INTEGER), 'hospital_extras', amount FROM costs_hospital_extras
)
SELECT patient_id, yr AS {{ "year" | ident }}, sum(amount) AS total
{%- for c in patient_year_columns %},
    sum(CASE WHEN col = '{{ c }}' THEN amount ELSE CAST(0 AS DECIMAL(18,2)) END) AS {{ c | ident }}
{%- endfor %}
FROM amounts
GROUP BY patient_id, yr
