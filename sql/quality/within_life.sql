{#- Event dates inside the patient's life: observed = dated events before the first day of the birth
    month (January when the month is unknown) or after the death date. Patients without a birth year or
    without a death date are only checked on the side that is known. -#}
SELECT coalesce(sum(CASE WHEN e.{{ column | ident }} < make_date(p.birth_year, coalesce(p.birth_month, 1), 1)
                           OR e.{{ column | ident }} > p.death_date THEN 1 ELSE 0 END), 0) AS observed,
       count(e.{{ column | ident }}) AS total, CAST(NULL AS VARCHAR) AS example
FROM {{ view }} AS e
JOIN patients AS p ON p.patient_id = e.patient_id
