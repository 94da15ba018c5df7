{#- Key uniqueness: observed = rows beyond the first of each key (rows - distinct keys); NULL keys group together. -#}
SELECT coalesce(sum(n), 0) - count(*) AS observed, coalesce(sum(n), 0) AS total, CAST(NULL AS VARCHAR) AS example
FROM (
    SELECT {{ columns | map('ident') | join(', ') }}, count(*) AS n
    FROM {{ view }}
    GROUP BY {{ columns | map('ident') | join(', ') }}
) AS keys
