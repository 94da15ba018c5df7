{#-
  Clean DCIR, step 3: the rows of one detail table ({{ table }}) follow their line (9-key join).
  - a row without a line in ER_PRS_F (its line was quarantined at ingest): dcir_detail_without_line;
  - a row of a line removed by a line rule: that rule;
  - a row of a claim removed by dcir_regularisation (summing to <= 0): dcir_regularisation;
  - within a kept claim, rows with the same code ({{ code }}) are one item:
    {%- if quantity %} their {{ quantity }} is summed and the item is kept when the sum is > 0, as the row of
    the representative line (else the row with the largest quantity){% else %} the representative
    line's rows are kept{% endif %}; the other rows are removed by dcir_regularisation.
  Kept rows carry the representative line's keys, so they join the cleaned ER_PRS_F.
  Input: `{{ table }}`, dcir_lines (step 2). Output: the table's columns + `_removed_by`, `_net`, `_g_<key>`.
-#}
{%- set item = "PARTITION BY _eligible, " ~ (join_keys | map("prefix", "_g_") | map("ident") | join(", ")) ~ ", " ~ (code | ident) -%}
WITH rows_with_line AS (
    SELECT d.*, l._line_found, l._rule, l._group_kept, l._is_rep,
        {% for k in join_keys %}l.{{ ("_g_" ~ k) | ident }}{{ ", " if not loop.last }}{% endfor %}
    FROM {{ table }} AS d
    LEFT JOIN (SELECT *, true AS _line_found FROM dcir_lines) AS l
      ON {% for k in join_keys %}{{ "AND " if not loop.first }}l.{{ k | ident }} = d.{{ k | ident }} {% endfor %}
),
items AS (
    SELECT *,
        {%- if quantity %}
        sum({{ quantity | ident }}) OVER ({{ item }}) AS _net,
        row_number() OVER ({{ item }} ORDER BY _is_rep DESC, {{ quantity | ident }} DESC,
            {{ (join_keys + order_columns) | map("ident") | join(", ") }}) AS _rank
        {%- else %}
        NULL AS _net,
        CASE WHEN _is_rep THEN 1 ELSE 2 END AS _rank
        {%- endif %}
    FROM (SELECT *, coalesce(_line_found AND _rule IS NULL AND _group_kept, false) AS _eligible FROM rows_with_line) AS r
)
SELECT *,
    CASE WHEN _line_found IS NULL THEN 'dcir_detail_without_line'
         WHEN _rule IS NOT NULL THEN _rule
         WHEN NOT _group_kept THEN 'dcir_regularisation'
         WHEN _rank > 1 {%- if quantity %} OR _net <= 0{% endif %} THEN 'dcir_regularisation' END AS _removed_by
FROM items
