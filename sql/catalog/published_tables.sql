{#- The tables of every published version, with their row counts (from the Parquet footers, checked
    against the model step's report when published). -#}
CREATE TABLE main.snds_published_tables (
    "release" VARCHAR,
    run_id VARCHAR,
    table_name VARCHAR,
    "rows" BIGINT,
    location VARCHAR
)
