{#- diagnoses: PMSI diagnosis items, one per distinct (stay, code, type) (SSR repeats them every
    week), dated at the stay start; plus the ALDs of IR_IMB_R in the ICD-10 nomenclature, from their
    start to their end (1600-01-01 = still open). -#}
{%- from "merge/_codes.sql" import icd10 -%}
SELECT DISTINCT patient_id, code, source, code_type AS diagnosis_type, date, CAST(NULL AS DATE) AS end_date, year,
    eta_num, stay_id
FROM pmsi
WHERE item = 'diagnosis'
UNION ALL
SELECT BEN_NIR_PSA, {{ icd10("MED_MTF_COD") }}, 'ALD', 'ALD', IMB_ALD_DTD,
    CASE WHEN year(IMB_ALD_DTF) >= {{ missing_before_year }} THEN IMB_ALD_DTF END,
    CAST(year(IMB_ALD_DTD) AS INTEGER), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR)
FROM IR_IMB_R
WHERE MED_NCL_IDT = {{ ald_nomenclature | sql_string }} AND {{ icd10("MED_MTF_COD") }} IS NOT NULL
