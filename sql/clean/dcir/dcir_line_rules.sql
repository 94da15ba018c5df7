{#-
  Clean DCIR, step 1: the line rules of config/clean.yaml (dcir.line_rules), in order.
  Inputs: ER_PRS_F, and each detail table a rule reads (`reads:`).
  Output: every ER_PRS_F line, plus `_rule`: the first rule that removes it (sql/clean/dcir/rules/<rule>.sql),
          NULL for a line kept by every rule.
  A rule on a detail table removes the lines having at least one matching row (9-key join).
-#}
{%- set keys = join_keys | map("ident") | join(", ") -%}
WITH
{%- for table, table_rules in detail_rules.items() %}
hits_{{ table }} AS (
    SELECT {{ keys }}
    {%- for rule in table_rules %},
        max(CASE WHEN ({% include "clean/dcir/rules/" ~ rule.name ~ ".sql" %}) THEN 1 ELSE 0 END) AS _hit_{{ rule.name }}
    {%- endfor %}
    FROM {{ table }}
    GROUP BY {{ keys }}
),
{%- endfor %}
lines AS (
    SELECT p.*
    {%- for table, table_rules in detail_rules.items() %}{% for rule in table_rules %},
        hits_{{ table }}._hit_{{ rule.name }}
    {%- endfor %}{% endfor %}
    FROM ER_PRS_F AS p
    {%- for table in detail_rules %}
    LEFT JOIN hits_{{ table }} ON {% for k in join_keys %}{{ "AND " if not loop.first }}hits_{{ table }}.{{ k | ident }} = p.{{ k | ident }} {% endfor %}
    {%- endfor %}
)
SELECT {% for c in line_columns %}{{ c | ident }}, {% endfor %}
    CASE
    {%- for rule in rules %}
        {%- if rule.reads == "ER_PRS_F" %}
        WHEN ({% include "clean/dcir/rules/" ~ rule.name ~ ".sql" %}) THEN '{{ rule.name }}'
        {%- else %}
        WHEN _hit_{{ rule.name }} = 1 THEN '{{ rule.name }}'
        {%- endif %}
    {%- endfor %}
    END AS _rule
FROM lines
