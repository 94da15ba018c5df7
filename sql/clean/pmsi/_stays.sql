{#- The first row of each stay in a PMSI table: for SSR the first weekly RHS (RHS_NUM compared as a
    number, '2' before '10'), then every column, so that the choice is the same on every engine and
    every run. `key` is (year, stay key). -#}
{%- macro first_stay_rows(table, key, columns, week_column=none) -%}
SELECT * FROM (
    SELECT *, row_number() OVER (
        PARTITION BY {{ key | map("ident") | join(", ") }}
        ORDER BY {% if week_column %}TRY_CAST({{ week_column | ident }} AS BIGINT), {% endif %}{{ columns | map("ident") | join(", ") }}) AS _n
    FROM {{ table }}) AS ranked
WHERE _n = 1
{%- endmacro -%}
