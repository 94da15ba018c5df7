{#- Referential integrity: observed = rows of `view` whose key (`columns`) is not in `parent` (a NULL key counts as missing). -#}
SELECT coalesce(sum(CASE WHEN p._present IS NULL THEN 1 ELSE 0 END), 0) AS observed, count(*) AS total,
       CAST(NULL AS VARCHAR) AS example
FROM {{ view }} AS c
LEFT JOIN (
    SELECT DISTINCT {{ columns | map('ident') | join(', ') }}, 1 AS _present
    FROM {{ parent_view }}
) AS p ON {% for col in columns %}{{ 'c.' ~ (col | ident) }} = {{ 'p.' ~ (col | ident) }}{% if not loop.last %} AND {% endif %}{% endfor %}
