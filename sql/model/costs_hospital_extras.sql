{#- costs_hospital_extras (RULES.md, medico-economic model): expensive drugs (T_MCOaaMED, UCD) and
    implantable devices (T_MCOaaDMIP, LPP) billed on top of a valued public MCO stay, dated stay start
    + their delay in days; amount = purchase price x number administered / implanted. -#}
{%- from "merge/_codes.sql" import code -%}
{%- set yr = "year" | ident -%}
{%- set key = stay_keys.MCO.stay_key -%}
{%- for x in costs.extras %}
{{ "UNION ALL" if not loop.first }}
SELECT s.patient_id, s.source, s.eta_num, s.stay_id, s.start_date + CAST(coalesce(t.{{ x.delay_days | ident }}, 0) AS INTEGER) AS date,
    '{{ x.kind }}' AS kind, {{ code("t." ~ (x.code | ident)) }} AS code,
    CAST(t.{{ x.quantity | ident }} AS DECIMAL(18,3)) AS quantity, CAST(t.{{ x.amount | ident }} AS DECIMAL(18,2)) AS amount
FROM {{ x.table }} AS t
JOIN valued_mco_stays AS s ON t.{{ yr }} = s.{{ yr }} AND t.{{ key[0] | ident }} = s.eta_num AND t.{{ key[1] | ident }} = s.stay_id
{%- endfor %}
