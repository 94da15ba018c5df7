{#- The quality gates each published version passed: totals, and the warning checks that failed. -#}
CREATE TABLE main.snds_published_gates (
    "release" VARCHAR,
    run_id VARCHAR,
    gate VARCHAR,
    status VARCHAR,
    checks BIGINT,
    passed BIGINT,
    failed BIGINT,
    warnings BIGINT,
    skipped BIGINT,
    warning_checks VARCHAR[]
)
