{#-
  Clean DCIR, step 2: dcir_regularisation (RULES.md): a cancelled claim appears as an identical line
  with negative quantities in a later flux. Lines kept by the line rules that agree on every
  `group_by` column (NULL equals NULL) are one claim; the claim is kept, as one line, when its summed
  `quantity` is > 0. That line is the claim's representative: the line with the largest quantity
  (ties: earliest keys), carrying the sums of the `summed` columns (amounts summed as DECIMAL(18,2)).
  The claim's other lines are removed by this rule, and so are all lines of a claim summing to <= 0.
  Input: dcir_line_rules (ER_PRS_F + `_rule`).
  Output: every line with `_removed_by` (its line rule, 'dcir_regularisation', or NULL when kept),
  `_is_rep`, `_group_kept`, the representative's keys `_g_<key>` (they identify the claim) and the
  claim's sums `_net_<column>`.
  Most claims are one line: only the lines of claims with several lines go through the windows.
-#}
{%- set group_by = regularisation.group_by | map("ident") | join(", ") -%}
{%- set claim = "PARTITION BY " ~ group_by -%}
{%- set order = "ORDER BY " ~ (regularisation.quantity | ident) ~ " DESC, " ~ (join_keys | map("ident") | join(", ")) -%}
{%- macro value(c) -%}
{% if c in amount_columns %}CAST({{ c | ident }} AS DECIMAL(18,2)){% else %}{{ c | ident }}{% endif %}
{%- endmacro -%}
WITH multi_line_claims AS (
    SELECT {{ group_by }}, count(*) AS _claim_lines
    FROM dcir_line_rules
    WHERE _rule IS NULL
    GROUP BY {{ group_by }}
    HAVING count(*) > 1
),
lines AS (
    SELECT l.*, m._claim_lines
    FROM dcir_line_rules AS l
    LEFT JOIN multi_line_claims AS m
      ON l._rule IS NULL
      {%- for c in regularisation.group_by %}
      AND l.{{ c | ident }} IS NOT DISTINCT FROM m.{{ c | ident }}
      {%- endfor %}
),
claims AS (
    SELECT *,
        row_number() OVER ({{ claim }} {{ order }}) = 1 AS _first,
        {%- for k in join_keys %}
        first_value({{ k | ident }}) OVER ({{ claim }} {{ order }}) AS {{ ("_g_" ~ k) | ident }},
        {%- endfor %}
        {%- for c in regularisation.summed %}
        sum({{ value(c) }}) OVER ({{ claim }}) AS {{ ("_net_" ~ c) | ident }},
        {%- endfor %}
        sum({{ regularisation.quantity | ident }}) OVER ({{ claim }}) > 0 AS _claim_positive
    FROM lines
    WHERE _claim_lines IS NOT NULL
    UNION ALL
    -- A one-line claim (or a line removed by a line rule): its own representative and sums.
    SELECT *,
        true AS _first,
        {%- for k in join_keys %}
        {{ k | ident }} AS {{ ("_g_" ~ k) | ident }},
        {%- endfor %}
        {%- for c in regularisation.summed %}
        {{ value(c) }} AS {{ ("_net_" ~ c) | ident }},
        {%- endfor %}
        {{ regularisation.quantity | ident }} > 0 AS _claim_positive
    FROM lines
    WHERE _claim_lines IS NULL
)
SELECT *,
    CASE WHEN _rule IS NOT NULL THEN _rule
         WHEN NOT (coalesce(_claim_positive, false) AND _first) THEN 'dcir_regularisation' END AS _removed_by,
    _rule IS NULL AND _first AS _is_rep,
    _rule IS NULL AND coalesce(_claim_positive, false) AS _group_kept
FROM claims
