{#- costs_hospital_stays (RULES.md, medico-economic model): one row per valued hospital episode.
    MCO public stays: T_MCOaaVALO.MNT_TOT_AM when valued (_costs.sql valued_mco_stays); MCO private
    clinic stays: the sums of their matched DCIR claims (valuation DCIR; never also counted as
    outpatient care); outpatient visits (ACE): T_MCOaaVALOACE when valued; SSR, HAD, RIP: their billing
    table (STC) when billable to the Assurance maladie. -#}
{%- from "model/_costs.sql" import reimbursed -%}
{%- from "clean/pmsi/_stays.sql" import first_stay_rows -%}
{%- set yr = "year" | ident -%}
SELECT patient_id, source, eta_num, stay_id, start_date, end_date, 'PMSI' AS valuation,
    CAST(NULL AS DECIMAL(18,2)) AS base, amount AS reimbursed
FROM valued_mco_stays
UNION ALL
SELECT patient_id, stay_source, stay_eta_num, stay_id, stay_start, stay_end, 'DCIR',
    CAST(sum(BSE_REM_BSE) AS DECIMAL(18,2)), CAST(sum({{ reimbursed("claims_in_stays") }}) AS DECIMAL(18,2))
FROM claims_in_stays
GROUP BY patient_id, stay_source, stay_eta_num, stay_id, stay_start, stay_end
UNION ALL
SELECT c.NIR_ANO_17, 'ACE', c.ETA_NUM, c.SEQ_NUM, c.stay_start, c.stay_end, 'PMSI',
    CAST(v.{{ costs.ace.base | ident }} AS DECIMAL(18,2)), CAST(v.{{ costs.ace.amount | ident }} AS DECIMAL(18,2))
FROM ({{ first_stay_rows(costs.ace.visit_table, ["year", "ETA_NUM", "SEQ_NUM"], ["NIR_ANO_17", "stay_start", "stay_end"]) }}) AS c
JOIN ({{ first_stay_rows(costs.ace.valuation_table, ["year", "ETA_NUM", "SEQ_NUM"],
                         [costs.ace.valued_column, costs.ace.base, costs.ace.amount]) }}) AS v
  ON v.{{ yr }} = c.{{ yr }} AND v.ETA_NUM = c.ETA_NUM AND v.SEQ_NUM = c.SEQ_NUM
WHERE c.NIR_ANO_17 IS NOT NULL
  AND v.{{ costs.ace.valued_column | ident }} IS NOT NULL
  AND trim(CAST(v.{{ costs.ace.valued_column | ident }} AS VARCHAR)) NOT IN ({{ costs.ace.not_valued | sql_list }}, '')
{%- for source, spec in costs.billed_stays.items() %}
{%- set key = ["year"] + stay_keys[source].stay_key %}
UNION ALL
SELECT s.patient_id, s.source, s.eta_num, s.stay_id, s.date, s.end_date, 'PMSI',
    CAST(t.{{ spec.base | ident }} AS DECIMAL(18,2)), CAST(t.{{ spec.amount | ident }} AS DECIMAL(18,2))
FROM pmsi AS s
JOIN ({{ first_stay_rows(spec.table, key, [spec.billable_column, spec.amount, spec.base]) }}) AS t
  ON t.{{ yr }} = s.{{ yr }} AND t.{{ key[1] | ident }} = s.eta_num AND t.{{ key[2] | ident }} = s.stay_id
WHERE s.item = 'stay' AND s.source = '{{ source }}'
  AND trim(CAST(t.{{ spec.billable_column | ident }} AS VARCHAR)) = {{ spec.billable | sql_string }}
{%- endfor %}
