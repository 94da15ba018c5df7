{#- costs_outpatient (RULES.md, medico-economic model): one row per cleaned DCIR claim (net of
    régularisations) that does not belong to a hospital stay (PMSI-DCIR matching, _costs.sql), with
    its category (config/model.yaml costs.outpatient_categories, by PRS_NAT_REF) and its net amounts:
    paid PRS_PAI_MNT, base BSE_REM_BSE, reimbursed BSE_REM_MNT + CPL_REM_MNT. -#}
{%- from "model/_costs.sql" import same_claim, reimbursed -%}
SELECT p.patient_id, p.event_date AS date, p.event_end_date AS end_date, p.PRS_NAT_REF,
    CASE
    {%- for category, ranges in costs.outpatient_categories.items() %}
        WHEN {% for r in ranges %}{{ "OR " if not loop.first }}p.PRS_NAT_REF BETWEEN {{ r[0] | int }} AND {{ r[1] | int }} {% endfor %}THEN '{{ category }}'
    {%- endfor %}
        ELSE 'other' END AS category,
    CAST(p.PRS_PAI_MNT AS DECIMAL(18,2)) AS paid, CAST(p.BSE_REM_BSE AS DECIMAL(18,2)) AS base, {{ reimbursed("p") }} AS reimbursed
FROM dcir AS p
LEFT JOIN claims_in_stays AS a ON {{ same_claim("a", "p") }}
WHERE p.item = 'prestation' AND a._n IS NULL
