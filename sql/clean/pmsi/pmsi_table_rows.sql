{#-
  Clean PMSI: the rows of one table ({{ table }}) follow their stay (join on year and the stay key):
  removed by the stay's rule, or pmsi_incomplete_stay when no stay has their key.
  Output: the table's columns{% if with_dates %}, the stay's dates{% endif %} and `_removed_by`.
-#}
{%- set key = ["year"] + source.stay_key -%}
SELECT {% for c in columns %}t.{{ c | ident }}, {% endfor %}
    {%- if with_dates %}s.stay_start, s.stay_end, {% endif %}
    CASE WHEN s._found IS NULL THEN 'pmsi_incomplete_stay' ELSE s._removed_by END AS _removed_by
FROM {{ table }} AS t
LEFT JOIN (SELECT *, true AS _found FROM {{ stays_view }}) AS s
  ON {% for k in key %}{{ "AND " if not loop.first }}s.{{ k | ident }} = t.{{ k | ident }} {% endfor %}
