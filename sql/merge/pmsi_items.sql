{#-
  Merge PMSI, one source ({{ source.name }}): one "stay" item per cleaned stay (patient from the
  chaining table {{ source.chaining_table }}, dates reconstructed by the clean step, modes and group
  from the first row of {{ source.stay_table }}), then one item per diagnosis field and per act, each
  sub-table joined to the stay on its own and the results unioned (RULES.md: no wide join).
  Diagnoses are dated at the stay start; acts at the stay start plus their delay in days.
  Output columns: patient_id, source, eta_num, stay_id, year (file year), item, source_table,
  code_column, code, code_type, date, end_date, ENT_MOD, SOR_MOD, ghm.
-#}
{%- from "merge/_codes.sql" import icd10, code -%}
{%- from "clean/pmsi/_stays.sql" import first_stay_rows -%}
{%- set key = ["year"] + source.stay_key -%}
{%- macro on(t, s) -%}
{% for k in key %}{{ "AND " if not loop.first }}{{ t }}.{{ k | ident }} = {{ s }}.{{ k | ident }} {% endfor %}
{%- endmacro -%}
WITH b AS (
    {{ first_stay_rows(source.stay_table, key, b_columns, source.get("week_column")) }}
),
stays AS (
    SELECT c.{{ "year" | ident }}, c.{{ source.stay_key[0] | ident }}, c.{{ source.stay_key[1] | ident }},
        c.NIR_ANO_17 AS patient_id, c.stay_start, c.stay_end, b.ENT_MOD, b.SOR_MOD, {% if source.group_column %}b.{{ source.group_column | ident }}{% else %}CAST(NULL AS VARCHAR){% endif %} AS ghm
    FROM {{ source.chaining_table }} AS c
    JOIN b ON {{ on("b", "c") }}
)
SELECT patient_id, '{{ source.name }}' AS source, {{ source.stay_key[0] | ident }} AS eta_num,
    {{ source.stay_key[1] | ident }} AS stay_id, CAST({{ "year" | ident }} AS INTEGER) AS year, 'stay' AS item,
    '{{ source.chaining_table }}' AS source_table, CAST(NULL AS VARCHAR) AS code_column, CAST(NULL AS VARCHAR) AS code,
    CAST(NULL AS VARCHAR) AS code_type, stay_start AS date, stay_end AS end_date, ENT_MOD, SOR_MOD, ghm
FROM stays
{%- for d in source.diagnoses %}
UNION ALL
SELECT s.patient_id, '{{ source.name }}', s.{{ source.stay_key[0] | ident }}, s.{{ source.stay_key[1] | ident }},
    CAST(s.{{ "year" | ident }} AS INTEGER), 'diagnosis', '{{ d.table }}', '{{ d.column }}', {{ icd10("t." ~ (d.column | ident)) }},
    '{{ d.type }}', s.stay_start, CAST(NULL AS DATE), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR)
FROM {{ d.table }} AS t
JOIN stays AS s ON {{ on("s", "t") }}
WHERE {{ icd10("t." ~ (d.column | ident)) }} IS NOT NULL
{%- endfor %}
{%- for p in source.procedures %}
UNION ALL
SELECT s.patient_id, '{{ source.name }}', s.{{ source.stay_key[0] | ident }}, s.{{ source.stay_key[1] | ident }},
    CAST(s.{{ "year" | ident }} AS INTEGER), 'procedure', '{{ p.table }}', '{{ p.column }}', {{ code("t." ~ (p.column | ident)) }},
    'CCAM', s.stay_start + CAST(coalesce(t.{{ p.delay_days | ident }}, 0) AS INTEGER), CAST(NULL AS DATE),
    CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR)
FROM {{ p.table }} AS t
JOIN stays AS s ON {{ on("s", "t") }}
WHERE {{ code("t." ~ (p.column | ident)) }} IS NOT NULL
{%- endfor %}
