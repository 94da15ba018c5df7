{#-
  Clean DCIR output for one detail table: its kept rows in the table's schema, with the claim's
  representative keys and (for tables with a quantity) the item's summed quantity; amounts as
  DECIMAL(18,2). `_o*`: the output order.
-#}
SELECT
{%- for c in columns %}
    {% if c in join_keys -%}
    {{ ("_g_" ~ c) | ident }}
    {%- elif c == quantity -%}
    CAST(_net AS BIGINT)
    {%- elif c in amount_columns -%}
    CAST({{ c | ident }} AS DECIMAL(18,2))
    {%- else -%}
    {{ c | ident }}
    {%- endif %} AS {{ c | ident }},
{%- endfor %}
    {% for k in join_keys + [code] + order_columns %}{{ (("_g_" ~ k) if k in join_keys else k) | ident }} AS _o{{ loop.index }}{{ ", " if not loop.last }}{% endfor %}
FROM {{ rows_view }}
WHERE _removed_by IS NULL
