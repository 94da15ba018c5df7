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


def damage_sealed(blob: bytes, damage: str) -> bytes:
    """A sealed vault file damaged one way: flip_payload, flip_header, truncate or garbage."""
    blob = bytearray(blob)
    if damage == "flip_payload":
        blob[-5] ^= 1
    elif damage == "flip_header":
        blob[blob.index(b'"entries": 1') + 11] = ord("2")
    elif damage == "truncate":
        blob = blob[: len(blob) - 10]
    else:
        blob = bytearray(b"not a vault at all")
    return bytes(blob)


def region_key_file(directory: Path) -> LocalKeyFile:
    """A key file with the tests' pepper (its own master key), created if missing."""
    path = directory / "region.key"
    return LocalKeyFile(path) if path.exists() else LocalKeyFile.create(path, pepper=TEST_PEPPER)


def ingest_delivery(engine_name: str, delivery: Path, out: Path, *, config: Path | None = None,
                    spark=None, run_id: str = "t", vault_dir: Path | None = None,
                    params: Argon2Params = FAST_ARGON2, truth: bool = False, profile=None) -> dict:
    """Run the ingest step's code on an engine (vault and key under `out` unless given); return its
    report sections. With `truth`, a synthetic delivery's truth is pseudonymised into `out/truth`.
    `profile`: a Profile, a profile name or file, or "auto" (detected in the delivery)."""
    from spark_jobs.delivery import IngestConfig
    from spark_jobs.engines import open_engine
    from spark_jobs.ingest import Pseudonymisation, run_ingest

    if profile == "auto":
        from spark_jobs.detect import detect_profile

        profile = detect_profile(delivery, IngestConfig.load(config))
    cfg = IngestConfig.load(config, profile=profile)
    settings = {"spark": spark} if engine_name == "spark" else {}
    vault_dir = vault_dir or out / "vault"
    pseudo = Pseudonymisation(Vault(vault_dir, region_key_file(vault_dir.parent / (vault_dir.name + "-keys"))), params, 2)
    with open_engine(engine_name, **settings) as eng:
        return run_ingest(eng, delivery, out / "ingest", out / "quarantine", cfg, run_id, pseudo,
                          truth=out / "truth" if truth else None)



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


def run_steps_after_ingest(engine_name: str, ingest: Path, out: Path, *, spark=None, run_id: str = "t",
                           config: Path | None = None) -> dict:
    """Run clean (DCIR, PMSI), merge and model on an ingest zone, as the release DAG does; outputs under
    `out` (clean/, merge/, model/). Returns each step's report sections."""
    from spark_jobs.clean import load_clean_config, run_clean
    from spark_jobs.delivery import IngestConfig
    from spark_jobs.engines import open_engine
    from spark_jobs.merge import load_model_config, run_merge
    from spark_jobs.model import run_model

    icfg, ccfg, mcfg = IngestConfig.load(config), load_clean_config(), load_model_config()
    settings = {"spark": spark} if engine_name == "spark" else {}
    reports = {}
    with open_engine(engine_name, **settings) as eng:
        for source in ("dcir", "pmsi"):
            reports[f"clean_{source}"] = run_clean(eng, source, ingest, out / "clean" / source, icfg, ccfg, run_id)
        reports["merge"] = run_merge(eng, out / "clean", out / "merge", icfg, mcfg, run_id)
        reports["model"] = run_model(eng, out / "merge", ingest, out / "model", icfg, mcfg, run_id, clean=out / "clean")
    for report in reports.values():
        report["status"] = "success"
    return reports


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> content), to compare reruns byte for byte."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_test_region(tmp_path: Path, *, roots: tuple[Path, ...] = (), name: str = "local",
                      overrides: dict | None = None) -> Path:
    """A regions directory with config/regions/<name>.yaml's local settings moved under `tmp_path`
    (lake, landing, code, vault and key, lineage file) plus the extra local `roots` (e.g. where the
    test's delivery is), cheap argon2 and 2 GB for DuckDB. `overrides` are merged on top (nested
    mappings merged key by key). Returns the directory, for SNDS_REGIONS_DIR."""
    import yaml

    from snds_operators.regions import REGIONS_DIR, _merge

    cfg = yaml.safe_load((REGIONS_DIR / f"{name}.yaml").read_text())
    cfg = _merge(cfg, cfg.pop("variants", {}).get("local") or {})
    cfg["storage"] = {"local_roots": [str(tmp_path), *map(str, roots)], "lake_root": str(tmp_path / "lake"),
                      "landing_root": str(tmp_path / "landing"), "code_root": str(tmp_path / "code")}
    cfg["duckdb"] = {**cfg.get("duckdb", {}), "memory_limit": "2GB"}
    cfg["pseudonymisation"] = {
        "vault_root": str(tmp_path / "secure" / "vault"),
        "key_provider": {"type": "local_file", "path": str(tmp_path / "secure" / "keys" / "region.key"),
                         "create_if_missing": True},
        "argon2": {"time_cost": 1, "memory_cost_kib": 64, "parallelism": 1}}
    cfg["audit"] = {"type": "sqlite", "path": str(tmp_path / "audit" / "audit.db")}
    cfg["lineage"] = {**cfg["lineage"], "transport": {"type": "file", "append": True,
                                                      "log_file_path": str(tmp_path / "lineage" / "events.jsonl")}}
    cfg = _merge(cfg, overrides or {})
    regions = tmp_path / "regions"
    regions.mkdir(exist_ok=True)
    (regions / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return regions


def run_release_dag(tmp_path, delivery, engine: str | None, release: str | None, region: str = "local",
                    extra_env=None, regions=None, args=()):
    """Run a region's release DAG with `python -m snds_operators.localrun run` (airflow dags test) in a
    throw-away Airflow home under `tmp_path`; the region's local settings are moved under `tmp_path`
    (write_test_region) unless `regions` is given. Returns the completed process."""
    import os
    import subprocess
    import sys

    from snds_operators.regions import PROJECT_ROOT

    regions = regions or write_test_region(tmp_path, roots=(delivery.parent,), name=region)
    env = {k: v for k, v in os.environ.items()
           if k not in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__UNIT_TEST_MODE")}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow"), SNDS_REGIONS_DIR=str(regions), **(extra_env or {}))
    return subprocess.run(
        [sys.executable, "-m", "snds_operators.localrun", "run", *(["--input", str(delivery)] if delivery else []),
         *(["--release", release] if release else []), "--region", region, *(["--engine", engine] if engine else []),
         *args],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
