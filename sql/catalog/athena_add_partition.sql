ALTER TABLE {{ database }}.{{ table }} ADD IF NOT EXISTS PARTITION ({% for k, v in spec %}{{ k }} = {{ v | sql_string }}{{ ", " if not loop.last }}{% endfor %}) LOCATION {{ location | sql_string }}
