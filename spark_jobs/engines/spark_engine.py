"""Spark adapter: the same steps on Spark (spark-submit local[*], standalone cluster, or EMR)."""

from __future__ import annotations

import logging
import os
import sys

from spark_jobs import lakefs
from spark_jobs.spark_conf import SPARK_QUIET_CONF, SPARK_SQL_CONF

from .base import AUTHORING_DIALECT, Engine

log = logging.getLogger(__name__)

_ENCODINGS = {"utf-8": "UTF-8", "utf8": "UTF-8", "latin-1": "ISO-8859-1", "iso-8859-1": "ISO-8859-1", "latin1": "ISO-8859-1",
              "cp1252": "windows-1252", "windows-1252": "windows-1252"}


_REGEX_META = set(".$|()[{^?*+\\")

# Lookup tables (the release's raw -> pseudonym map: two short strings a row) up to this size are
# broadcast to every join; beyond it (tens of millions of patients) Spark's shuffle joins take over.
_LOOKUP_ROW_BYTES = 160


def _broadcast_limit() -> int:
    return int(os.environ.get("SNDS_SPARK_BROADCAST_MAX_MB", "512")) * 2**20


def _literal_split(node):
    """DuckDB's string_split(x, ';') splits on a plain string; Spark's split takes a regex, and sqlglot
    quotes the separator as CONCAT('\\Q', ';', '\\E'), which Java recompiles for every row. A single
    character (escaped when it is a regex metacharacter) takes Java's non-regex fast path instead."""
    import sqlglot.expressions as exp

    if isinstance(node, exp.Split) and isinstance(node.expression, exp.Literal) and node.expression.is_string:
        sep = node.expression.this
        if len(sep) == 1:
            pattern = "\\" + sep if sep in _REGEX_META else sep
            return exp.Anonymous(this="SPLIT", expressions=[node.this, exp.Literal.string(pattern)])
    return node


class SparkEngine(Engine):
    name = "spark"
    dialect = "spark"

    def transpile(self, sql: str) -> str:
        """The step's one statement, from the authoring dialect (DuckDB) to Spark SQL, with sqlglot."""
        import sqlglot

        tree = sqlglot.parse_one(sql, read=AUTHORING_DIALECT).transform(_literal_split)
        return tree.sql(dialect=self.dialect)

    def __init__(self, spark=None, app_name: str = "snds-step"):
        if spark is None:
            from pyspark.sql import SparkSession

            builder = SparkSession.builder.appName(app_name)
            if "PYSPARK_GATEWAY_PORT" not in os.environ:
                # Python workers (the pseudonym UDF) run this interpreter, which has the packages.
                os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
                # Plain `python -m spark_jobs.<step> --engine spark` (not under spark-submit, which
                # sets the master itself): run on all local cores.
                builder = builder.master(os.environ.get("SNDS_SPARK_MASTER", "local[*]"))
                # Spark's default of 200 shuffle partitions makes every join, window and DISTINCT of
                # a one-machine run pay for 200 tiny tasks; a few per core is enough here (clusters
                # set their own value through the region's spark.conf).
                builder = builder.config("spark.sql.shuffle.partitions",
                                         os.environ.get("SNDS_SPARK_SHUFFLE_PARTITIONS", str(2 * (os.cpu_count() or 1))))
                for key, value in SPARK_QUIET_CONF.items():
                    builder = builder.config(key, value)
            for key, value in SPARK_SQL_CONF.items():
                builder = builder.config(key, value)
            spark = builder.getOrCreate()
            # Step progress is logged by the step itself; Spark's INFO lines would drown it.
            spark.sparkContext.setLogLevel(os.environ.get("SNDS_SPARK_LOG_LEVEL", "WARN"))
        for key, value in SPARK_SQL_CONF.items():
            spark.conf.set(key, value)
        self.spark = spark
        self._cached: dict[str, object] = {}

    def read_lines(self, view: str, path, encoding: str, line_numbers: bool = True) -> None:
        enc = _ENCODINGS.get(encoding.lower())
        if enc is None:
            raise ValueError(f"unsupported encoding {encoding!r} (use utf-8, latin-1 or cp1252)")
        if enc == "windows-1252":
            # Spark 4 accepts only a short list of charsets unless the JVM's own are allowed.
            self.spark.conf.set("spark.sql.legacy.javaCharsets", "true")
        # The CSV reader (not the text reader) because it decodes Latin-1; \x01 never occurs, so each
        # line is one value and the step's SQL splits the fields, as on DuckDB.
        df = (
            self.spark.read.schema("line STRING")
            .option("header", "true")
            .option("sep", "\u0001")
            .option("quote", "")
            .option("escape", "")
            .option("encoding", enc)
            .option("ignoreLeadingWhiteSpace", "false")
            .option("ignoreTrailingWhiteSpace", "false")
            .option("enforceSchema", "true")
            .csv(str(path))
        )
        # monotonically_increasing_id: (split index, row within split), i.e. file order, stable for
        # the same file and settings; cheap, so given even when not asked for.
        from pyspark.sql import functions as F

        df.select("line", F.monotonically_increasing_id().alias("_lineno")).createOrReplaceTempView(view)

    def register_rows(self, view: str, columns: list[str], rows: list[tuple]) -> None:
        from pyspark.sql.types import StringType, StructField, StructType

        schema = StructType([StructField(c, StringType()) for c in columns])
        self.spark.createDataFrame(list(rows), schema).createOrReplaceTempView(view)

    def register_pseudonymiser(self, pepper: bytes, params, workers: int) -> None:
        """A pandas UDF: the hashing runs on the executors, one Arrow batch at a time; parallelism
        comes from Spark's task slots (each task hashes on one thread)."""
        import pandas as pd
        from pyspark.sql.functions import pandas_udf

        from spark_jobs.vault import pseudonym_batch

        counter = self.spark.sparkContext.accumulator(0)

        def snds_pseudonym(values):
            counter.add(len(values))
            return pd.Series(pseudonym_batch(values.tolist(), pepper, params, 1), index=values.index)

        # Real type objects (this module's annotations are strings): Series -> Series is a scalar UDF.
        snds_pseudonym.__annotations__ = {"values": pd.Series, "return": pd.Series}
        self._counter = counter
        self.spark.udf.register("snds_pseudonym", pandas_udf(snds_pseudonym, "string"))

    def spread(self, view: str) -> None:
        """A small result often sits in one partition (adaptive execution coalesces it), so one task
        would hash everything: redistribute it over twice the default parallelism (every core busy,
        stragglers balanced). Which row lands where does not change any result."""
        df = self._cached.pop(view, None) or self.spark.table(view)
        spread = df.repartition(2 * self.spark.sparkContext.defaultParallelism).persist()
        spread.count()
        if df.is_cached:
            df.unpersist()
        self._cached[view] = spread
        spread.createOrReplaceTempView(view)

    def pseudonym_calls(self) -> int:
        counter = getattr(self, "_counter", None)
        return int(counter.value) if counter is not None else 0

    def create_view(self, view: str, sql: str, materialize: bool = False, lookup: bool = False) -> None:
        df = self.spark.sql(self.transpile(sql))
        rows = None
        if materialize:
            df = df.persist()
            rows = df.count()  # compute once, now
            self._cached[view] = df
        if lookup and rows is not None and rows * _LOOKUP_ROW_BYTES <= _broadcast_limit():
            # A join with a big table then keeps that table's partitions and row order, instead of
            # shuffling and sorting both sides (what happens above spark.sql.autoBroadcastJoinThreshold).
            from pyspark.sql.functions import broadcast

            df = broadcast(df)
        df.createOrReplaceTempView(view)

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(r) for r in self.spark.sql(self.transpile(sql)).collect()]

    def columns(self, view: str) -> list[str]:
        return list(self.spark.table(view).columns)

    def write_parquet(self, sql: str, directory, order_by: str | None = None) -> None:
        directory = lakefs.LakePath(directory)
        staging = directory.with_name(directory.name + ".__spark")
        lakefs.delete_tree(staging)
        df = self.spark.sql(self.transpile(sql))
        if order_by:
            # Rows go to partitions by a hash of the order columns (not by how the upstream shuffles,
            # joins and unions happened to split them, which adaptive execution may vary), then are
            # sorted within each: the same rows give the same files. A global sort would not: its
            # range boundaries come from a sample.
            columns = [c.strip() for c in order_by.split(",")]
            partitions = int(self.spark.conf.get("spark.sql.shuffle.partitions"))
            df = df.repartition(partitions, *columns).sortWithinPartitions(*columns).drop(*columns)
        df.write.mode("overwrite").parquet(str(staging))
        lakefs.make_dirs(directory)
        # Spark names parts part-<index>-<random uuid>-c000...; keep the index, drop the randomness,
        # so that the same input gives the same file names (a rename locally, a copy on S3).
        parts = [p for p in lakefs.list_files(staging, ".parquet", recursive=False) if p.name.startswith("part-")]
        for i, part in enumerate(parts):
            lakefs.move(part, directory / f"part-{i:05d}.parquet")
        lakefs.delete_tree(staging)

    def read_parquet(self, view: str, directory) -> None:
        # mergeSchema: yearly files of one table may have different columns (a file has the columns
        # its delivery had), as union_by_name does on DuckDB.
        (self.spark.read.option("basePath", str(directory)).option("mergeSchema", "true")
         .parquet(str(directory)).createOrReplaceTempView(view))

    def drop_view(self, view: str) -> None:
        df = self._cached.pop(view, None)
        if df is not None:
            df.unpersist()
        self.spark.catalog.dropTempView(view)

    def close(self) -> None:
        for view in list(self._cached):
            self.drop_view(view)
