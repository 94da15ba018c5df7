{#- Dates inside the release window [window_start, window_end]: observed = non-NULL dates outside it.
    Rows matching `start_exempt` are only checked against the end: a PMSI stay belongs to the release
    by its file (discharge) year, and its admission, with the events dated at it, may come earlier. -#}
SELECT coalesce(sum(CASE WHEN ({{ column | ident }} < DATE {{ window_start | sql_string }}
                                {%- if start_exempt %} AND NOT coalesce({{ start_exempt }}, false){% endif %})
                           OR {{ column | ident }} > DATE {{ window_end | sql_string }} THEN 1 ELSE 0 END), 0) AS observed,
       count({{ column | ident }}) AS total, CAST(NULL AS VARCHAR) AS example
FROM {{ view }}
{%- if where %}
WHERE {{ where }}
{%- endif %}
