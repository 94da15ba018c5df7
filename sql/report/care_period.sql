{#- The care period of the model: first and last calendar year with a care event (NULLs when the
    model has none). The pyramid's reference date is 31 December of the last one. -#}
{%- from "report/_care.sql" import care_years -%}
SELECT CAST(MIN(year) AS INTEGER) AS first_year, CAST(MAX(year) AS INTEGER) AS last_year
FROM ({{ care_years() }}) AS care
