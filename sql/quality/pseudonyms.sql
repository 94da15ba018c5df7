{#- No raw identifier: observed = non-NULL values of identifier columns that are not pseudonyms
    (`targets`: every (view, column) of the zone's tables that holds identifiers). -#}
SELECT coalesce(sum(bad), 0) AS observed, coalesce(sum(n), 0) AS total,
       min(CASE WHEN bad > 0 THEN target END) AS example
FROM (
{%- for t in targets %}
    SELECT {{ (t.table ~ '.' ~ t.column) | sql_string }} AS target,
           sum(CASE WHEN {{ t.column | ident }} IS NOT NULL
                     AND NOT regexp_matches({{ t.column | ident }}, {{ pattern | sql_string }}) THEN 1 ELSE 0 END) AS bad,
           count({{ t.column | ident }}) AS n
    FROM {{ t.view }}
    {%- if not loop.last %}
    UNION ALL
    {%- endif %}
{%- endfor %}
) AS per_column
