{#- Value domain by format: observed = non-NULL values that do not match the anchored regular expression. -#}
SELECT coalesce(sum(CASE WHEN {{ column | ident }} IS NOT NULL
                          AND NOT regexp_matches(CAST({{ column | ident }} AS VARCHAR), {{ pattern | sql_string }})
                         THEN 1 ELSE 0 END), 0) AS observed,
       count({{ column | ident }}) AS total, CAST(NULL AS VARCHAR) AS example
FROM {{ view }}
{%- if where %}
WHERE {{ where }}
{%- endif %}
