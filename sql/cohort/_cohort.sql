{#- The index population of a study, as CTEs shared by index_population.sql and attrition.sql.

    `study`: the normalised study (spark_jobs.cohort.load_study): window_start, window_end, study_end
    (ISO dates), inclusion and exclusions ({icd10, atc, ccam, diagnosis_sources, diagnosis_types}),
    sex (list or none), age_min / age_max (or none), cmuc (required, excluded, any), look_back_days,
    exclusion_window_days, follow_up_days (or none).
    `tables`: model table -> the relation to read it from: a view name on DuckDB, a Glue table of one
    published version for Athena (spark_jobs.cohort.trino_tables).

    Authored in DuckDB's dialect and transpiled to Trino by sqlglot: no QUALIFY, no date +/- integer,
    LEAST/GREATEST only over non-NULL values (Trino's return NULL if any argument is), quoted "date"
    and "year" columns. Code prefixes are letters and digits only (the schema's patterns), so LIKE
    'prefix%' matches exactly the codes starting with them. -#}

{% macro prefixed(column, prefixes) -%}
({% for p in prefixes %}{{ column }} LIKE {{ (p ~ "%") | sql_string }}{{ " OR " if not loop.last }}{% endfor %})
{%- endmacro %}

{#- Events whose code starts with one of the prefixes of `codes`, any vocabulary: patient_id,
    event_date, vocabulary (icd10, atc, ccam), code. -#}
{% macro coded_events(codes, tables) -%}
{%- set ns = namespace(first=true) -%}
{%- if codes.icd10 %}
SELECT d.patient_id, d."date" AS event_date, 'icd10' AS vocabulary, d.code AS code
FROM {{ tables.diagnoses }} AS d
WHERE {{ prefixed("d.code", codes.icd10) }}
{%- if codes.diagnosis_sources %} AND d.source IN ({{ codes.diagnosis_sources | sql_list }}){% endif %}
{%- if codes.diagnosis_types %} AND d.diagnosis_type IN ({{ codes.diagnosis_types | sql_list }}){% endif %}
{%- set ns.first = false %}
{%- endif %}
{%- if codes.atc %}
{{ "UNION ALL" if not ns.first }}
SELECT x.patient_id, x."date" AS event_date, 'atc' AS vocabulary, x.atc AS code
FROM {{ tables.drug_dispensations }} AS x
WHERE {{ prefixed("x.atc", codes.atc) }}
{%- set ns.first = false %}
{%- endif %}
{%- if codes.ccam %}
{{ "UNION ALL" if not ns.first }}
SELECT a.patient_id, a."date" AS event_date, 'ccam' AS vocabulary, a.code AS code
FROM {{ tables.procedures }} AS a
WHERE {{ prefixed("a.code", codes.ccam) }}
{%- endif %}
{%- endmacro %}

{% macro days_before(column, days) -%}
CAST({{ column }} - INTERVAL '{{ days | int }}' DAY AS DATE)
{%- endmacro %}

{#- The WITH clause: `assessed` has one row per patient with a qualifying event in the window, and
    failed_step = the first criterion it fails (2 sex, 3 age, 4 CMU-C, 5 look-back, 6 exclusions), NULL
    when it is in the index population. -#}
{% macro cohort_ctes(study, tables) -%}
WITH qualifying AS (
    SELECT e.patient_id, e.event_date, e.vocabulary, e.code
    FROM ({{ coded_events(study.inclusion, tables) | indent(8) }}
    ) AS e
    WHERE e.event_date >= DATE {{ study.window_start | sql_string }}
      AND e.event_date <= DATE {{ study.window_end | sql_string }}
),
ranked AS (
    -- Ties on the index date are broken by vocabulary then code, so the index code is deterministic.
    SELECT q.patient_id, q.event_date, q.vocabulary, q.code,
        row_number() OVER (PARTITION BY q.patient_id ORDER BY q.event_date, q.vocabulary, q.code) AS event_rank
    FROM qualifying AS q
),
index_events AS (
    SELECT r.patient_id, r.event_date AS index_date, r.vocabulary AS index_vocabulary, r.code AS index_code
    FROM ranked AS r
    WHERE r.event_rank = 1
),
first_care AS (
    -- "Observable from the first care event": the earliest dated care of the patient in the model
    -- (outpatient consultations, dispensations, acts, biology, devices, hospital stays). Diagnoses are
    -- not care events: an ALD is dated by its start, often years before the data begins.
    SELECT c.patient_id, min(c.first_date) AS first_care_date
    FROM (
        {%- for t in ("consults", "drug_dispensations", "procedures", "biology", "devices") %}
        SELECT t{{ loop.index }}.patient_id, min(t{{ loop.index }}."date") AS first_date
        FROM {{ tables[t] }} AS t{{ loop.index }} GROUP BY t{{ loop.index }}.patient_id
        UNION ALL
        {%- endfor %}
        SELECT s.patient_id, min(s.start_date) AS first_date
        FROM {{ tables.stays }} AS s GROUP BY s.patient_id
    ) AS c
    GROUP BY c.patient_id
),
{%- if study.has_exclusions %}
excluding_events AS ({{ coded_events(study.exclusions, tables) | indent(4) }}
),
excluded AS (
    -- Strictly before the index date: the index event itself never excludes.
    SELECT DISTINCT i.patient_id
    FROM index_events AS i
    JOIN excluding_events AS x ON x.patient_id = i.patient_id
    WHERE x.event_date < i.index_date
      AND x.event_date >= {{ days_before("i.index_date", study.exclusion_window_days) }}
),
{%- endif %}
candidates AS (
    SELECT i.patient_id, i.index_date, i.index_vocabulary, i.index_code, p.sex, p.birth_year,
        year(i.index_date) - p.birth_year AS age,
        CASE WHEN c.patient_id IS NULL THEN 0 ELSE 1 END AS cmuc,
        f.first_care_date, p.death_date, p.last_contact_date,
        {% if study.has_exclusions %}CASE WHEN x.patient_id IS NULL THEN 0 ELSE 1 END{% else %}0{% endif %} AS excluded
    FROM index_events AS i
    LEFT JOIN {{ tables.patients }} AS p ON p.patient_id = i.patient_id
    LEFT JOIN (SELECT DISTINCT m.patient_id, m."year" FROM {{ tables.cmuc }} AS m) AS c
        ON c.patient_id = i.patient_id AND c."year" = year(i.index_date)
    LEFT JOIN first_care AS f ON f.patient_id = i.patient_id
    {%- if study.has_exclusions %}
    LEFT JOIN excluded AS x ON x.patient_id = i.patient_id
    {%- endif %}
),
assessed AS (
    SELECT k.*,
        CASE
            {%- if study.sex %}
            WHEN NOT coalesce(k.sex IN ({{ study.sex | sql_list }}), false) THEN 2
            {%- endif %}
            {%- if study.age_min is not none or study.age_max is not none %}
            WHEN k.age IS NULL
                {%- if study.age_min is not none %} OR k.age < {{ study.age_min | int }}{% endif %}
                {%- if study.age_max is not none %} OR k.age > {{ study.age_max | int }}{% endif %} THEN 3
            {%- endif %}
            {%- if study.cmuc == "required" %}
            WHEN k.cmuc = 0 THEN 4
            {%- elif study.cmuc == "excluded" %}
            WHEN k.cmuc = 1 THEN 4
            {%- endif %}
            {%- if study.look_back_days > 0 %}
            WHEN k.first_care_date IS NULL OR k.first_care_date > {{ days_before("k.index_date", study.look_back_days) }} THEN 5
            {%- endif %}
            WHEN k.excluded = 1 THEN 6
        END AS failed_step
    FROM candidates AS k
)
{%- endmacro %}
