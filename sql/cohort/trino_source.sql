{#- One model table of one published version, in Athena's Glue catalog (spark_jobs/catalog.py's
    `<table>_versions`, partitioned by release and run_id): what the Trino cohort SQL reads. -#}
(SELECT * FROM {{ database }}.{{ table }}_versions WHERE "release" = {{ release | sql_string }} AND run_id = {{ run_id | sql_string }})
