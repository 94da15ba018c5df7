{#- Dates inside the release window [window_start, window_end]: observed = non-NULL dates outside it. -#}
SELECT coalesce(sum(CASE WHEN {{ column | ident }} < DATE {{ window_start | sql_string }}
                           OR {{ column | ident }} > DATE {{ window_end | sql_string }} THEN 1 ELSE 0 END), 0) AS observed,
       count({{ column | ident }}) AS total, CAST(NULL AS VARCHAR) AS example
FROM {{ view }}
{%- if where %}
WHERE {{ where }}
{%- endif %}
