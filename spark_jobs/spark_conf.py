"""Spark session settings every step relies on, whatever the cluster.

Set by the Spark engine adapter on its session and passed as --conf on the spark-submit command line
(plugins/snds_operators/operators.py), so that the driver starts with them. No imports: the DAG
factory reads this at parse time.
"""

SPARK_SQL_CONF = {
    # Non-ANSI mode: an out-of-range array index or a failed cast gives NULL, as DuckDB's TRY_CAST and
    # list indexing do. The SQL checks every value it parses and turns such NULLs into quarantine reasons.
    "spark.sql.ansi.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
}

# No Spark UI and no console progress bar for step runs: steps log their own progress, and the UI
# port is useless for short batch jobs. Static settings: they apply when a session starts.
SPARK_QUIET_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
