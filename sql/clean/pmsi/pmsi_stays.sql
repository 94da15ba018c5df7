{#-
  Clean PMSI, one source ({{ source.name }}): one row per stay, its fate and its dates.
  A stay is the first row of {{ source.stay_table }} (SSR: the first week) joined with its row of
  {{ source.chaining_table }} on (year, {{ source.stay_key | join(", ") }}).
  `_removed_by`, first match in this order:
    pmsi_incomplete_stay  the stay lacks its B or its C row (the other was quarantined at ingest, or
                          dropped there for a placeholder NIR: pmsi_placeholder_nir);
    then the source's rules (sql/clean/pmsi/rules/<rule>.sql): {{ rules | map(attribute="name") | join(", ") }};
    a rule is not applied to the years whose tables lack every column it reads (rule.unevaluable_years).
  `stay_start`, `stay_end`: sql/clean/pmsi/_stay_dates.sql.
-#}
{%- from "clean/pmsi/_stay_dates.sql" import stay_start, stay_end -%}
{%- from "clean/pmsi/_stays.sql" import first_stay_rows -%}
{%- set key = ["year"] + source.stay_key -%}
WITH b AS (
    {{ first_stay_rows(source.stay_table, key, b_columns, source.get("week_column")) }}
),
c AS (
    {{ first_stay_rows(source.chaining_table, key, c_columns) }}
),
stays AS (
    SELECT
        {%- for k in key %}
        coalesce(b.{{ k | ident }}, c.{{ k | ident }}) AS {{ k | ident }},
        {%- endfor %}
        b.{{ key[1] | ident }} IS NOT NULL AS _has_b,
        c.{{ key[1] | ident }} IS NOT NULL AS _has_c
        {%- for col in b_columns if col not in key %},
        b.{{ col | ident }}
        {%- endfor %}
        {%- for col in c_columns if col not in key and col not in b_columns %},
        c.{{ col | ident }}
        {%- endfor %}
    FROM b FULL OUTER JOIN c ON {% for k in key %}{{ "AND " if not loop.first }}b.{{ k | ident }} = c.{{ k | ident }} {% endfor %}
)
SELECT *,
    CASE WHEN NOT (_has_b AND _has_c) THEN 'pmsi_incomplete_stay'
    {%- for rule in rules %}
         WHEN {% if rule.unevaluable_years %}year NOT IN ({{ rule.unevaluable_years | join(", ") }}) AND {% endif -%}
              ({% include "clean/pmsi/rules/" ~ rule.name ~ ".sql" %}) THEN '{{ rule.name }}'
    {%- endfor %}
    END AS _removed_by,
    {{ stay_start(source.name, missing_before_year) }} AS stay_start,
    {{ stay_end(source.name, missing_before_year) }} AS stay_end
FROM stays
