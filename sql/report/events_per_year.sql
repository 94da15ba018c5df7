{#- Events and distinct patients per calendar year, per event table. Years before {{ first_year }}
    (the care period's first) are gathered as {{ first_year - 1 }}, after {{ last_year }} as
    {{ last_year + 1 }} (ALD starts go back decades); events without a date as year 0. -#}
{%- for t in tables %}
SELECT '{{ t.table }}' AS table_name, year, COUNT(*) AS events, COUNT(DISTINCT patient_id) AS patients
FROM (
    SELECT patient_id,
        CASE
            WHEN {{ t.year }} IS NULL THEN 0
            WHEN {{ t.year }} < {{ first_year }} THEN {{ first_year - 1 }}
            WHEN {{ t.year }} > {{ last_year }} THEN {{ last_year + 1 }}
            ELSE CAST({{ t.year }} AS INTEGER)
        END AS year
    FROM {{ t.table }}
) AS e
GROUP BY year
{% if not loop.last %}UNION ALL{% endif %}
{%- endfor %}
ORDER BY table_name, year, events, patients
