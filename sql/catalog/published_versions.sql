{#- Every published version (one row per versions/<run>.json manifest); filled by catalog.refresh. -#}
CREATE TABLE main.snds_published_versions (
    "release" VARCHAR,
    schema_name VARCHAR,
    run_id VARCHAR,
    is_current BOOLEAN,
    is_latest_release BOOLEAN,
    published_at TIMESTAMPTZ,
    code_version VARCHAR,
    model VARCHAR,
    report VARCHAR,
    previous_run_id VARCHAR
)
