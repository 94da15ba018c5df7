{#-
  Clean DCIR output: ER_PRS_F lines kept by every rule, in the table's schema, each kept claim as one
  line carrying the claim's sums; amounts as DECIMAL(18,2). `_o1.._o9`: the output order (the keys).
-#}
SELECT
{%- for c in line_columns %}
    {% if c in regularisation.summed -%}
    {% if c in amount_columns %}CAST({{ ("_net_" ~ c) | ident }} AS DECIMAL(18,2)){% else %}{{ ("_net_" ~ c) | ident }}{% endif %}
    {%- elif c in amount_columns -%}
    CAST({{ c | ident }} AS DECIMAL(18,2))
    {%- else -%}
    {{ c | ident }}
    {%- endif %} AS {{ c | ident }},
{%- endfor %}
    {% for k in join_keys %}{{ k | ident }} AS _o{{ loop.index }}{{ ", " if not loop.last }}{% endfor %}
FROM dcir_lines
WHERE _removed_by IS NULL
