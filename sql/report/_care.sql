{#- Care events of the model: (patient_id, year) per dated care event. Deaths, ALD starts (which go
    back decades) and CMU-C years are not care: they would stretch the care period. Stays count in the
    years they start and end. -#}
{%- macro care_years() -%}
SELECT patient_id, year(date) AS year FROM procedures WHERE date IS NOT NULL
UNION ALL SELECT patient_id, year(date) AS year FROM consults WHERE date IS NOT NULL
UNION ALL SELECT patient_id, year(date) AS year FROM biology WHERE date IS NOT NULL
UNION ALL SELECT patient_id, year(date) AS year FROM devices WHERE date IS NOT NULL
UNION ALL SELECT patient_id, year(date) AS year FROM drug_dispensations WHERE date IS NOT NULL
UNION ALL SELECT patient_id, year(start_date) AS year FROM stays WHERE start_date IS NOT NULL
UNION ALL SELECT patient_id, year(end_date) AS year FROM stays WHERE end_date IS NOT NULL
{%- endmacro -%}
