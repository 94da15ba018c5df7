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
{%- set g_keys = join_keys | map("prefix", "_g_") | map("ident") | list -%}
{%- set item = "PARTITION BY " ~ (g_keys | join(", ")) ~ ", " ~ (code | ident) -%}
WITH rows_with_line AS (
    SELECT d.*, l._line_found, l._rule, l._group_kept, l._is_rep,
        coalesce(l._line_found AND l._rule IS NULL AND l._group_kept, false) AS _eligible,
        {% for k in join_keys %}l.{{ ("_g_" ~ k) | ident }}{{ ", " if not loop.last }}{% endfor %}
    FROM {{ table }} AS d
    LEFT JOIN (SELECT *, true AS _line_found FROM dcir_lines) AS l
      ON {% for k in join_keys %}{{ "AND " if not loop.first }}l.{{ k | ident }} = d.{{ k | ident }} {% endfor %}
),
{%- if quantity %}
-- Most items are one row: only the rows of items with several rows go through the windows.
multi_row_items AS (
    SELECT {{ g_keys | join(", ") }}, {{ code | ident }}, count(*) AS _item_rows
    FROM rows_with_line
    WHERE _eligible
    GROUP BY {{ g_keys | join(", ") }}, {{ code | ident }}
    HAVING count(*) > 1
),
marked AS (
    SELECT r.*, m._item_rows
    FROM rows_with_line AS r
    LEFT JOIN multi_row_items AS m
      ON r._eligible
      {%- for k in g_keys %} AND m.{{ k }} = r.{{ k }}{% endfor %}
      AND m.{{ code | ident }} IS NOT DISTINCT FROM r.{{ code | ident }}
),
items AS (
    SELECT *,
        sum({{ quantity | ident }}) OVER ({{ item }}) AS _net,
        row_number() OVER ({{ item }} ORDER BY _is_rep DESC, {{ quantity | ident }} DESC,
            {{ (join_keys + order_columns) | map("ident") | join(", ") }}) AS _rank
    FROM marked
    WHERE _item_rows IS NOT NULL
    UNION ALL
    SELECT *, {{ quantity | ident }} AS _net, 1 AS _rank
    FROM marked
    WHERE _item_rows IS NULL
)
{%- else %}
items AS (
    SELECT *, NULL AS _net, CASE WHEN _is_rep THEN 1 ELSE 2 END AS _rank
    FROM rows_with_line
)
{%- endif %}
SELECT *,
    CASE WHEN _line_found IS NULL THEN 'dcir_detail_without_line'
         WHEN _rule IS NOT NULL THEN _rule
         WHEN NOT _group_kept THEN 'dcir_regularisation'
         WHEN _rank > 1 {%- if quantity %} OR _net <= 0{% endif %} THEN 'dcir_regularisation' END AS _removed_by
FROM items
