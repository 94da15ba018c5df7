"""Helpers shared by test modules (import as `from helpers import ...`)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from spark_jobs.keys import LocalKeyFile
from spark_jobs.vault import Argon2Params, Vault


#: Tests pseudonymise with a fixed pepper (so that runs in different directories and on different
#: engines give the same pseudonyms) and cheap argon2 parameters (the default costs ~20 ms a hash).
TEST_PEPPER = b"snds-tests-pepper-not-a-secret!!"
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost_kib=64, parallelism=1)
FAST_ARGON2_ARGS = ["--argon2-time-cost", "1", "--argon2-memory-kib", "64", "--argon2-parallelism", "1"]


def region_key_file(directory: Path) -> LocalKeyFile:
    """A key file with the tests' pepper (its own master key), created if missing."""
    path = directory / "region.key"
    return LocalKeyFile(path) if path.exists() else LocalKeyFile.create(path, pepper=TEST_PEPPER)


def ingest_delivery(engine_name: str, delivery: Path, out: Path, *, config: Path | None = None,
                    spark=None, run_id: str = "t", vault_dir: Path | None = None,
                    params: Argon2Params = FAST_ARGON2) -> dict:
    """Run the ingest step's code on an engine (vault and key under `out` unless given); return its
    report sections."""
    from spark_jobs.delivery import IngestConfig
    from spark_jobs.engines import open_engine
    from spark_jobs.ingest import Pseudonymisation, run_ingest

    cfg = IngestConfig.load(config)
    settings = {"spark": spark} if engine_name == "spark" else {}
    vault_dir = vault_dir or out / "vault"
    pseudo = Pseudonymisation(Vault(vault_dir, region_key_file(vault_dir.parent / (vault_dir.name + "-keys"))), params, 2)
    with open_engine(engine_name, **settings) as eng:
        return run_ingest(eng, delivery, out / "ingest", out / "quarantine", cfg, run_id, pseudo)



def table_rows(directory: Path) -> list[tuple]:
    """All rows of a Parquet directory, as a sorted list (a multiset made comparable)."""
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT * FROM read_parquet('{directory}/**/*.parquet', hive_partitioning = false)"
    ).fetchall()
    return sorted(rows, key=repr)


def table_schema(directory: Path) -> list[tuple[str, str]]:
    con = duckdb.connect()
    return [
        (name, type_)
        for name, type_, *_ in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{directory}/**/*.parquet', hive_partitioning = false)"
        ).fetchall()
    ]
