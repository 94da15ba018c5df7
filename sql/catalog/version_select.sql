{#- One published version of a model table: its columns (as its manifest lists them), from its Parquet
    files; typed and empty when the version wrote no file for it. hive_partitioning is off: the
    location's own `release=`/`run=` directories are not columns. -#}
{%- if has_files %}
SELECT {% for c in columns %}{{ c.name | ident }}{{ ", " if not loop.last }}{% endfor %}
FROM read_parquet({{ (location ~ "/**/*.parquet") | sql_string }}, hive_partitioning = false)
{%- else %}
SELECT {% for c in columns %}CAST(NULL AS {{ c.type }}) AS {{ c.name | ident }}{{ ", " if not loop.last }}{% endfor %}
WHERE false
{%- endif %}
