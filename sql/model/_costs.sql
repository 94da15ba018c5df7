{#- Shared pieces of the medico-economic model (config/model.yaml `costs`, RULES.md "Medico-economic
    model"). Views read: dcir and pmsi (merge items), stays (model), the clean PMSI tables named in the
    configuration. -#}
{%- from "clean/pmsi/_stays.sql" import first_stay_rows -%}

{#- The columns that identify one cleaned DCIR claim: the régularisation key (config/clean.yaml
    dcir.regularisation.group_by, one claim per key after netting) plus its flux month. Every item of a
    claim (prestation, establishment row, ...) carries them; compared null-safe. -#}
{%- set claim_key = ["patient_id", "BEN_RNG_GEM", "event_date", "event_end_date", "PRS_NAT_REF", "PFS_EXE_NUM",
                     "ETB_PRE_FIN", "CPL_MAJ_TOP", "CPL_AFF_COD", "FLX_DIS_DTD"] -%}
{%- macro same_claim(a, b) -%}
{% for k in claim_key %}{{ "AND " if not loop.first }}{{ a }}.{{ k | ident }} IS NOT DISTINCT FROM {{ b }}.{{ k | ident }} {% endfor %}
{%- endmacro -%}

{#- PMSI-DCIR matching: the cleaned claims that belong to a kept hospital stay of a source in
    `sources`: same patient, an establishment row (ER_ETE_F.ETB_EXE_FIN) equal to the stay's FINESS,
    care dates inside the stay. A claim inside several such stays goes to the one starting last (then
    the smallest source, FINESS, stay number), so it is counted once. Output: the prestation item's
    columns, then stay_source, stay_eta_num, stay_id, stay_start, stay_end. -#}
{%- macro claims_in_stays(sources) -%}
SELECT * FROM (
    SELECT p.*, s.source AS stay_source, s.eta_num AS stay_eta_num, s.stay_id AS stay_id, s.start_date AS stay_start,
        s.end_date AS stay_end,
        row_number() OVER (PARTITION BY {% for k in claim_key %}{{ ", " if not loop.first }}p.{{ k | ident }}{% endfor %}
                           ORDER BY s.start_date DESC, s.source, s.eta_num, s.stay_id) AS _n
    FROM (SELECT DISTINCT {{ claim_key | map("ident") | join(", ") }}, code FROM dcir WHERE item = 'establishment') AS e
    JOIN stays AS s
      ON s.patient_id = e.patient_id AND s.eta_num = e.code AND s.source IN ({{ sources | sql_list }})
     AND e.event_date >= s.start_date AND coalesce(e.event_end_date, e.event_date) <= s.end_date
    JOIN dcir AS p ON p.item = 'prestation' AND {{ same_claim("p", "e") }}
) AS ranked
WHERE _n = 1
{%- endmacro -%}

{#- Net amounts of a prestation item: reimbursed = Assurance maladie + CMU-C complementary. -#}
{%- macro reimbursed(p) -%}
CAST(coalesce({{ p }}.BSE_REM_MNT, 0) + coalesce({{ p }}.CPL_REM_MNT, 0) AS DECIMAL(18,2))
{%- endmacro -%}

{#- Valued public MCO stays (RULES.md): a valuation row whose `valued_column` is neither missing nor
    one of `not_valued`; not a service for another establishment (ENT_MOD / SOR_MOD in
    `excluded_modes`); from `typ_gen_rsa_from_year`, TYP_GEN_RSA = '0'. One row per stay, with its
    file year and the valuation amount. -#}
{%- macro valued_mco_stays(mco, stay_table, key) -%}
SELECT s.patient_id, s.source, s.eta_num, s.stay_id, s.{{ "year" | ident }}, s.date AS start_date, s.end_date,
    CAST(v.{{ mco.amount | ident }} AS DECIMAL(18,2)) AS amount
FROM pmsi AS s
JOIN ({{ first_stay_rows(mco.valuation_table, key, [mco.valued_column, mco.amount]) }}) AS v
  ON v.{{ "year" | ident }} = s.{{ "year" | ident }} AND v.{{ key[1] | ident }} = s.eta_num AND v.{{ key[2] | ident }} = s.stay_id
JOIN ({{ first_stay_rows(stay_table, key, ["TYP_GEN_RSA"]) }}) AS b
  ON b.{{ "year" | ident }} = s.{{ "year" | ident }} AND b.{{ key[1] | ident }} = s.eta_num AND b.{{ key[2] | ident }} = s.stay_id
WHERE s.item = 'stay' AND s.source = 'MCO'
  AND v.{{ mco.valued_column | ident }} IS NOT NULL AND trim(CAST(v.{{ mco.valued_column | ident }} AS VARCHAR)) NOT IN ({{ mco.not_valued | sql_list }}, '')
  AND coalesce(s.ENT_MOD, '') NOT IN ({{ mco.excluded_modes | sql_list }})
  AND coalesce(s.SOR_MOD, '') NOT IN ({{ mco.excluded_modes | sql_list }})
  AND (s.{{ "year" | ident }} < {{ mco.typ_gen_rsa_from_year }} OR b.TYP_GEN_RSA = '0')
{%- endmacro -%}
