{#- Patients per combination of the death sources that record a death for them (flags 0/1 in the
    order of `sources`). -#}
SELECT {% for s in sources %}s{{ loop.index0 }}, {% endfor %}COUNT(*) AS patients
FROM (
    SELECT patient_id
    {%- for s in sources %},
        MAX(CASE WHEN source = {{ s | sql_string }} THEN 1 ELSE 0 END) AS s{{ loop.index0 }}
    {%- endfor %}
    FROM deaths_by_source
    GROUP BY patient_id
) AS p
GROUP BY {% for s in sources %}s{{ loop.index0 }}{% if not loop.last %}, {% endif %}{% endfor %}
ORDER BY {% for s in sources %}s{{ loop.index0 }}, {% endfor %}patients
