{#- A study's attrition: the patients remaining after each criterion, in order (step 0: every patient
    of the model; 1: a qualifying event in the index window; 2 sex; 3 age at index; 4 CMU-C; 5
    look-back; 6 exclusions), and how many each step removed. A criterion the study does not set
    removes nobody but keeps its row, so every study's table has the same steps.
    `criteria`: [{step, criterion, description}] (spark_jobs.cohort.criteria). -#}
{%- from "cohort/_cohort.sql" import cohort_ctes -%}
{{ cohort_ctes(study, tables) }},
counts AS (
    SELECT 0 AS step, count(*) AS patients FROM {{ tables.patients }} AS p
    {%- for c in criteria if c.step > 0 %}
    UNION ALL
    SELECT {{ c.step | int }} AS step, count(*) AS patients FROM assessed AS a
    {%- if c.step > 1 %} WHERE a.failed_step IS NULL OR a.failed_step > {{ c.step | int }}{% endif %}
    {%- endfor %}
),
labels AS (
    {%- for c in criteria %}
    SELECT {{ c.step | int }} AS step, {{ c.criterion | sql_string }} AS criterion, {{ c.description | sql_string }} AS description
    {{- "\n    UNION ALL" if not loop.last }}
    {%- endfor %}
)
SELECT
    CAST(l.step AS INTEGER) AS step,
    CAST(l.criterion AS VARCHAR) AS criterion,
    CAST(l.description AS VARCHAR) AS description,
    CAST(n.patients AS BIGINT) AS patients,
    CAST(coalesce(lag(n.patients) OVER (ORDER BY l.step) - n.patients, 0) AS BIGINT) AS removed
FROM labels AS l
JOIN counts AS n ON n.step = l.step
ORDER BY l.step
