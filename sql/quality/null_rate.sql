{#- Completeness: observed = NULL values (compared with threshold or max_rate x total). -#}
SELECT coalesce(sum(CASE WHEN {{ column | ident }} IS NULL THEN 1 ELSE 0 END), 0) AS observed, count(*) AS total,
       CAST(NULL AS VARCHAR) AS example
FROM {{ view }}
{%- if where %}
WHERE {{ where }}
{%- endif %}
