{#- Rows of each model table (one query: each query is a job on Spark). -#}
{%- for t in tables %}
SELECT {{ t | sql_string }} AS table_name, COUNT(*) AS row_count FROM {{ t }}
{% if not loop.last %}UNION ALL{% endif %}
{%- endfor %}
ORDER BY table_name, row_count
