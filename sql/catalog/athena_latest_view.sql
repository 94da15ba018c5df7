{#- Athena runs views with its Trino engine: plain identifiers, single-quoted strings. -#}
CREATE OR REPLACE VIEW {{ database }}.{{ table }}_latest AS
SELECT * FROM {{ database }}.{{ table }} WHERE release = {{ release | sql_string }}
