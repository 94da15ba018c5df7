{#-
  Clean DCIR output of one table ({{ source_view }}): the rows kept by every rule, in the table's
  schema. `replaced` gives the value of the columns a claim changes (ER_PRS_F: the claim's sums;
  detail tables: the representative line's keys and the item's summed quantity). Amounts are written
  as DECIMAL(18,2).
-#}
SELECT
{%- for c in columns %}
    {%- set value = replaced.get(c, c | ident) %}
    {% if c in amount_columns %}CAST({{ value }} AS DECIMAL(18,2)){% else %}{{ value }}{% endif %} AS {{ c | ident }}{{ "," if not loop.last }}
{%- endfor %}
FROM {{ source_view }}
WHERE _removed_by IS NULL
