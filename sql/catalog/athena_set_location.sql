{#- After ADD IF NOT EXISTS (a no-op when the partition exists): point it at the version published now. -#}
ALTER TABLE {{ database }}.{{ table }} PARTITION ({% for k, v in spec %}{{ k }} = {{ v | sql_string }}{{ ", " if not loop.last }}{% endfor %}) SET LOCATION {{ location | sql_string }}
