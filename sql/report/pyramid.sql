{#- Patients by status, sex and 5-year age band at 31 December {{ reference_year }}. Every patient
    falls in exactly one row: 'not_alive' (died on or before the reference date), 'unknown_sex' (sex
    not 1 or 2), 'unknown_age' (no birth year, or born after the reference year), else 'alive' with
    its band (0 = 0-4 ... {{ last_band }} = {{ last_band * 5 }}+). Age on 31 December = reference
    year - birth year (the birthday is past). No NULLs in the output: sex 0 and band -1 stand for
    "not applicable" (the engines sort NULLs differently). -#}
SELECT status, sex, band, COUNT(*) AS patients
FROM (
    SELECT
        CASE
            WHEN death_date IS NOT NULL AND year(death_date) <= {{ reference_year }} THEN 'not_alive'
            WHEN sex IS NULL OR sex NOT IN (1, 2) THEN 'unknown_sex'
            WHEN birth_year IS NULL OR birth_year > {{ reference_year }} THEN 'unknown_age'
            ELSE 'alive'
        END AS status,
        CASE WHEN sex IN (1, 2) THEN CAST(sex AS INTEGER) ELSE 0 END AS sex,
        CASE
            WHEN birth_year IS NULL OR birth_year > {{ reference_year }} THEN -1
            ELSE CAST(LEAST(FLOOR(({{ reference_year }} - birth_year) / 5.0), {{ last_band }}) AS INTEGER)
        END AS band
    FROM patients
) AS p
GROUP BY status, sex, band
ORDER BY status, sex, band, patients
