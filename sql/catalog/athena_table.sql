{#- A model table for Athena: one partition per release (`partitions` = release) or per published
    version (release, run_id). Columns are typed as the model writes them (Hive names, see
    catalog.athena_type). Partitions are added by name, never discovered (no MSCK REPAIR: the
    directories are release=R/run=<run>/<table>/, not partition keys). -#}
CREATE EXTERNAL TABLE IF NOT EXISTS {{ database }}.{{ table }} (
{%- for c in columns %}
  `{{ c.name }}` {{ c.type }}{{ "," if not loop.last }}
{%- endfor %}
)
PARTITIONED BY ({% for p in partitions %}`{{ p }}` string{{ ", " if not loop.last }}{% endfor %})
STORED AS PARQUET
LOCATION {{ location | sql_string }}
