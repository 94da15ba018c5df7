{#- A model table against the generator's truth (synthetic deliveries): both sides as text rows, the
    model's values written as the truth writes them (ISO dates, plain numbers, '' for NULL); observed =
    rows in one side and not the other, as multisets. `truth_view` holds the truth table with its
    patient_id pseudonymised by ingest (sql/pseudonymise/truth_events.sql). -#}
WITH model_rows AS (
    SELECT {% for c in columns %}coalesce(CAST({{ c | ident }} AS VARCHAR), '') AS {{ c | ident }}{% if not loop.last %}, {% endif %}{% endfor %}
    FROM {{ view }}
),
truth_rows AS (
    SELECT {% for c in columns %}coalesce({{ c | ident }}, '') AS {{ c | ident }}{% if not loop.last %}, {% endif %}{% endfor %}
    FROM {{ truth_view }}
),
only_model AS (
    SELECT * FROM model_rows EXCEPT ALL SELECT * FROM truth_rows
),
only_truth AS (
    SELECT * FROM truth_rows EXCEPT ALL SELECT * FROM model_rows
)
SELECT (SELECT count(*) FROM only_model) + (SELECT count(*) FROM only_truth) AS observed,
       (SELECT count(*) FROM truth_rows) AS total, CAST(NULL AS VARCHAR) AS example
