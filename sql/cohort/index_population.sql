{#- A study's index population: one row per included patient, ordered by patient_id. Follow-up ends
    at the earliest of death, last contact, the study end and index + follow_up_days, and never
    before the index date. See _cohort.sql for the parameters and docs/cohorts.md for the columns. -#}
{%- from "cohort/_cohort.sql" import cohort_ctes -%}
{{ cohort_ctes(study, tables) }},
included AS (
    SELECT a.*,
        {%- if study.follow_up_days %}
        CAST(a.index_date + INTERVAL '{{ study.follow_up_days | int }}' DAY AS DATE) AS horizon,
        {%- else %}
        CAST(NULL AS DATE) AS horizon,
        {%- endif %}
        LEAST(coalesce(a.death_date, DATE '9999-12-31'), coalesce(a.last_contact_date, DATE '9999-12-31'),
              {%- if study.follow_up_days %}
              CAST(a.index_date + INTERVAL '{{ study.follow_up_days | int }}' DAY AS DATE),
              {%- endif %}
              DATE {{ study.study_end | sql_string }}) AS end_bound
    FROM assessed AS a
    WHERE a.failed_step IS NULL
),
followed AS (
    SELECT n.*, GREATEST(n.index_date, n.end_bound) AS follow_up_end,
        CASE
            WHEN n.end_bound = n.death_date THEN 'death'
            WHEN n.end_bound = n.last_contact_date THEN 'last_contact'
            WHEN n.end_bound = n.horizon THEN 'follow_up_days'
            ELSE 'study_end'
        END AS follow_up_end_reason
    FROM included AS n
)
SELECT
    CAST(f.patient_id AS VARCHAR) AS patient_id,
    CAST(f.index_date AS DATE) AS index_date,
    CAST(f.index_vocabulary AS VARCHAR) AS index_vocabulary,
    CAST(f.index_code AS VARCHAR) AS index_code,
    CAST(f.sex AS INTEGER) AS sex,
    CAST(f.birth_year AS INTEGER) AS birth_year,
    CAST(f.age AS INTEGER) AS age,
    CAST(f.cmuc AS INTEGER) AS cmuc,
    CAST(f.first_care_date AS DATE) AS first_care_date,
    CAST(f.follow_up_end AS DATE) AS follow_up_end,
    CAST(f.follow_up_end_reason AS VARCHAR) AS follow_up_end_reason,
    CAST(date_diff('day', f.index_date, f.follow_up_end) AS INTEGER) AS follow_up_days
FROM followed AS f
ORDER BY f.patient_id
