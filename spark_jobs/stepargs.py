"""Command-line arguments shared by every step entry point.

The same arguments are given whether the step runs in an Airflow task on DuckDB, under
`spark-submit --master local[*]`, or on EMR: only the URIs and `--engine` change.
"""

from __future__ import annotations

import argparse
import logging
import sys

from spark_jobs.engines import ENGINES


def step_parser(step: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"spark_jobs.{step}", description=description)
    p.add_argument("--engine", choices=ENGINES, default="duckdb", help="SQL engine (default: duckdb)")
    p.add_argument("--release", required=True, help="data release id, e.g. 2024-06")
    p.add_argument("--run-id", required=True, help="run id (one per DAG run)")
    p.add_argument("--report", required=True, help="where to write this step's JSON report")
    p.add_argument("--duckdb-memory-limit", default=None, help="DuckDB memory_limit, e.g. 8GB")
    p.add_argument("--duckdb-threads", type=int, default=None, help="DuckDB threads")
    p.add_argument("--allowed-root", action="append", default=[], metavar="ROOT",
                   help="the region's storage (repeatable): every location argument must be under one of "
                        "them, or the step refuses to run (data sovereignty)")
    return p


def add_config_args(p: argparse.ArgumentParser, clean: bool = False, model: bool = False) -> None:
    """The configuration files a step reads (defaults: the repository's config/)."""
    p.add_argument("--config", default=None, help="ingest configuration (default: config/ingest.yaml)")
    if clean:
        p.add_argument("--clean-config", default=None, help="cleaning rules (default: config/clean.yaml)")
    if model:
        p.add_argument("--model-config", default=None, help="merge and model settings (default: config/model.yaml)")


def add_profile_args(p: argparse.ArgumentParser) -> None:
    """The delivery profile (how the files are written): config/profiles/<name>.yaml, a file, or auto."""
    from spark_jobs.profiles import ENCODINGS, PATIENT_COLUMNS

    p.add_argument("--profile", default=None,
                   help="delivery profile: a name under config/profiles/ (default: native), a profile file, or "
                        "`auto` (detected from the delivery's headers and first lines)")
    p.add_argument("--encoding", default=None, choices=ENCODINGS, help="override the profile's encoding")
    p.add_argument("--patient-id-column", default=None, choices=PATIENT_COLUMNS,
                   help="override the profile's patient column naming")


def ingest_config_from_args(args: argparse.Namespace, delivery=None):
    """The ingest configuration with the profile the arguments choose (`auto`: detected in `delivery`)."""
    from spark_jobs.delivery import DeliveryError, IngestConfig
    from spark_jobs.profiles import AUTO

    profile = args.profile
    if profile == AUTO:
        from spark_jobs.detect import detect_profile

        if delivery is None:
            raise DeliveryError("--profile auto needs the delivery to detect it from")
        profile = detect_profile(delivery, IngestConfig.load(args.config))
    return IngestConfig.load(args.config, profile=profile, encoding=args.encoding,
                             patient_id_column=args.patient_id_column)


def add_pseudonymisation_args(p: argparse.ArgumentParser, argon2: bool = True) -> None:
    """The region's vault and key provider (and argon2 parameters), as the region config gives them."""
    g = p.add_argument_group("pseudonymisation")
    g.add_argument("--vault", required=True, help="the region's vault directory (apart from the lake)")
    keys = g.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key-file", help="local key file (embedded default)")
    keys.add_argument("--kms-key-arn", help="AWS KMS key of the region")
    g.add_argument("--kms-region", default=None, help="AWS region of the KMS key")
    if argon2:
        from spark_jobs.vault import Argon2Params

        d = Argon2Params()
        g.add_argument("--argon2-time-cost", type=int, default=d.time_cost)
        g.add_argument("--argon2-memory-kib", type=int, default=d.memory_cost_kib)
        g.add_argument("--argon2-parallelism", type=int, default=d.parallelism)


def key_provider_from_args(args: argparse.Namespace):
    """(key provider, vault root, argon2 parameters) from the arguments of add_pseudonymisation_args."""
    from spark_jobs.lakefs import LakePath
    from spark_jobs.keys import open_key_provider
    from spark_jobs.objectstore import normalise_root
    from spark_jobs.uris import is_s3
    from spark_jobs.vault import Argon2Params

    # An S3 vault (s3://bucket/prefix) is opened through the KMS provider's S3 store (EMR: the job's role).
    vault_root = normalise_root(args.vault) if is_s3(args.vault) else LakePath(args.vault).local()
    if args.key_file:
        spec = {"type": "local_file", "path": str(LakePath(args.key_file).local())}
    else:
        spec = {"type": "aws_kms", "key_arn": args.kms_key_arn, "region_name": args.kms_region}
    params = None
    if hasattr(args, "argon2_time_cost"):
        params = Argon2Params(time_cost=args.argon2_time_cost, memory_cost_kib=args.argon2_memory_kib,
                              parallelism=args.argon2_parallelism)
    return open_key_provider(spec, vault_root), vault_root, params


def engine_settings(args: argparse.Namespace) -> dict:
    if args.engine == "duckdb":
        return {"memory_limit": args.duckdb_memory_limit, "threads": args.duckdb_threads}
    return {"app_name": f"snds-{args.release}-{args.run_id}"}


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
        force=True,
    )
    # py4j is chatty at INFO on every call.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("sqlglot").setLevel(logging.WARNING)
