"""Ingest step on a synthetic delivery: counts against the generator's truth, both engines equal,
deterministic and idempotent outputs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import duckdb
import pytest

from conftest import PROJECT_ROOT
from helpers import FAST_ARGON2_ARGS, ingest_delivery, table_rows, table_schema, region_key_file


@pytest.fixture(scope="module")
def duckdb_run(synth_delivery, tmp_path_factory):
    out = tmp_path_factory.mktemp("ingest_duckdb")
    return out, ingest_delivery("duckdb", synth_delivery, out)


@pytest.fixture(scope="module")
def spark_run(synth_delivery, tmp_path_factory, spark):
    out = tmp_path_factory.mktemp("ingest_spark")
    return out, ingest_delivery("spark", synth_delivery, out, spark=spark)


def _per_file(report: dict) -> dict:
    return {f["file"]: f for t in report["tables"].values() for f in t["files"]}


def test_counts_match_the_truth(duckdb_run, synth_truth):
    out, report = duckdb_run
    files = _per_file(report)
    assert set(files) == set(synth_truth["files"])
    for name, truth in synth_truth["files"].items():
        got = files[name]
        assert got["rows_read"] == truth["rows"], name
        assert got["quarantine_reasons"] == truth["quarantine"], name
        # unreadable values in columns no rule needs: nulled and counted, the row kept
        assert {f'{c["column"]}|{c["reason"]}': c["cells"] for c in got["nulled_cells"]} == truth.get("nulled", {}), name
        # PMSI stays not linked to a patient (placeholder NIR) are dropped by their named rule.
        unlinked = truth["cleaning"].get("pmsi_placeholder_nir", 0)
        assert got["dropped_by_rule"] == ({"pmsi_placeholder_nir": unlinked} if unlinked else {}), name
        assert got["rows"] == truth["rows"] - sum(truth["quarantine"].values()) - unlinked, name
    t = report["totals"]
    assert t["rows_read"] == t["rows_written"] + t["quarantined"] + t["dropped_by_rule"]
    assert sum(report["dropped_by_rule"]["pmsi_placeholder_nir"].values()) == sum(
        synth_truth["cleaning"]["pmsi_placeholder_nir"].values())
    assert t["quarantined"] > 0  # the generator plants malformed rows
    # Every table's Parquet row count is what the report says.
    con = duckdb.connect()
    for table, info in report["tables"].items():
        (n,) = con.execute(f"SELECT count(*) FROM read_parquet('{out}/ingest/{table}/**/*.parquet')").fetchone()
        assert n == info["rows"], table


def test_quarantine_keeps_pseudonymised_line_and_reason(duckdb_run, synth_delivery):
    """Each quarantined line is a delivered line with its identifiers replaced by their pseudonyms
    (and, when it has a missing or extra field, its other fields reduced to their shape)."""
    from spark_jobs.vault import Vault

    out, report = duckdb_run
    mapping, _ = Vault(out / "vault", region_key_file(out / "vault-keys")).load(include_pending=True)
    con = duckdb.connect()
    rows = con.execute(f"SELECT source_file, reason, raw_line FROM read_parquet('{out}/quarantine/**/*.parquet')").fetchall()
    assert len(rows) == report["quarantine"]["rows"]
    import re

    def shape(field):  # what the quarantine keeps of a non-identifier field of a malformed line
        return re.sub("[A-Za-z]", "A", re.sub("[0-9]", "9", field))

    for source_file, reason, raw_line in rows:
        lines = (synth_delivery / source_file).read_text(encoding="utf-8").splitlines()
        keep = shape if reason == "wrong_column_count" else (lambda field: field)
        expected = {";".join(mapping.get(field) or keep(field) for field in line.split(";")) for line in lines}
        assert raw_line in expected, (source_file, reason)
        assert not any(field in mapping for field in raw_line.split(";")), (source_file, reason)


def test_engines_give_equal_outputs(duckdb_run, spark_run):
    """Engine equivalence: same tables, same schemas, same rows (as multisets), same quarantine."""
    (d_out, d_rep), (s_out, s_rep) = duckdb_run, spark_run
    assert d_rep["totals"] == s_rep["totals"]
    assert d_rep["quarantine"]["by_reason"] == s_rep["quarantine"]["by_reason"]
    for zone in ("ingest", "quarantine"):
        d_parts = sorted(p.relative_to(d_out / zone) for p in (d_out / zone).rglob("*.parquet"))
        s_parts = sorted(p.relative_to(s_out / zone) for p in (s_out / zone).rglob("*.parquet"))
        assert {p.parent for p in d_parts} == {p.parent for p in s_parts}
        for part_dir in sorted({p.parent for p in d_parts}):
            d_dir, s_dir = d_out / zone / part_dir, s_out / zone / part_dir
            assert table_schema(d_dir) == table_schema(s_dir), part_dir
            assert table_rows(d_dir) == table_rows(s_dir), part_dir


def _digest(root) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_rerun_is_byte_identical_and_replaces_output(synth_delivery, tmp_path):
    first = ingest_delivery("duckdb", synth_delivery, tmp_path, run_id="a")
    digest = _digest(tmp_path)
    (tmp_path / "ingest" / "stale_table").mkdir()  # leftovers of an older run disappear
    second = ingest_delivery("duckdb", synth_delivery, tmp_path, run_id="b")
    assert _digest(tmp_path) == digest
    assert first["totals"] == second["totals"]
    assert not list(tmp_path.glob("*.__staging-*")) and not list(tmp_path.glob("*.__old"))


def test_spark_output_is_deterministic(synth_delivery, tmp_path, spark, spark_run):
    """A second Spark run gives the same bytes (file names included) as the first."""
    first, _ = spark_run
    ingest_delivery("spark", synth_delivery, tmp_path, spark=spark, run_id="again")
    zones = lambda root: {k: v for k, v in _digest(root).items() if k.startswith(("ingest/", "quarantine/"))}
    assert zones(tmp_path) == zones(first)


def test_failed_ingest_leaves_previous_output(synth_delivery, tmp_path, monkeypatch):
    """A run that fails half-way (here: on the third file) leaves the previous output as it was,
    and no staging directory behind."""
    import spark_jobs.ingest as ingest

    ingest_delivery("duckdb", synth_delivery, tmp_path, run_id="good")
    before = _digest(tmp_path)
    real, calls = ingest.ingest_file, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "ingest_file", failing)
    with pytest.raises(OSError, match="simulated"):
        ingest_delivery("duckdb", synth_delivery, tmp_path, run_id="bad")
    assert _digest(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ingest", "quarantine", "vault", "vault-keys"]
    assert [p.name for p in (tmp_path / "vault" / "pending").iterdir()] == ["good.delta"]  # none from the failed run


def test_entry_point_cli_writes_report(synth_delivery, tmp_path):
    """`python -m spark_jobs.ingest` as the DuckDB operator runs it; a bad delivery exits 1 with a clear line."""
    args = ["--engine", "duckdb", "--input", str(synth_delivery), "--output", str(tmp_path / "i"),
            "--quarantine", str(tmp_path / "q"), "--report", str(tmp_path / "r.json"), "--release", "r1", "--run-id", "x",
            "--vault", str(tmp_path / "vault"), "--key-file", str(region_key_file(tmp_path / "keys").path),
            *FAST_ARGON2_ARGS]
    proc = subprocess.run([sys.executable, "-m", "spark_jobs.ingest", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "success" and report["engine"] == "duckdb" and report["seconds"] > 0
    assert "ingest done in" in proc.stdout
    bad = tmp_path / "empty"
    bad.mkdir()
    args[args.index("--input") + 1] = str(bad)
    proc = subprocess.run([sys.executable, "-m", "spark_jobs.ingest", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "no file of a catalogued SNDS table in this delivery" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "failed"


def test_latin1_num_enq_iso_delivery(tmp_path):
    """A CNAM study extract: Latin-1, NUM_ENQ as the patient column, ISO dates in DCIR. Ingest with that
    profile matches the truth, writes NUM_ENQ back under each table's native patient column and decodes
    accented text."""
    from snds_synth import generate
    from spark_jobs.delivery import IngestConfig
    from spark_jobs.engines import open_engine
    from spark_jobs.ingest import Pseudonymisation, run_ingest
    from spark_jobs.vault import Vault

    from helpers import FAST_ARGON2

    delivery = tmp_path / "d"
    truth = generate(delivery, n=120, seed=3, years=(2019, 2020), dcir_dates="iso", encoding="latin-1",
                     id_column="NUM_ENQ", quiet=True)
    assert "NUM_ENQ" in (delivery / "ER_PRS_F.csv").read_bytes().split(b"\n", 1)[0].decode()
    cfg = IngestConfig.load(encoding="latin-1", patient_id_column="NUM_ENQ")
    with open_engine("duckdb") as eng:
        report = run_ingest(eng, delivery, tmp_path / "ingest", tmp_path / "quarantine", cfg, "t",
                            Pseudonymisation(Vault(tmp_path / "vault", region_key_file(tmp_path / "keys")), FAST_ARGON2))
    files = _per_file(report)
    for name, t in truth["files"].items():
        assert (files[name]["rows_read"], files[name]["quarantine_reasons"]) == (t["rows"], t["quarantine"]), name
    con = duckdb.connect()
    prs_cols = [c for (c, *_) in con.execute(f"DESCRIBE SELECT * FROM '{tmp_path}/ingest/ER_PRS_F/*.parquet'").fetchall()]
    assert "BEN_NIR_PSA" in prs_cols and "NUM_ENQ" not in prs_cols
    (linked,) = con.execute(f"""
        SELECT count(*) FROM read_parquet('{tmp_path}/ingest/T_MCOaaC/*/*.parquet') c
        JOIN (SELECT DISTINCT BEN_NIR_PSA FROM '{tmp_path}/ingest/IR_BEN_R/*.parquet') b ON c.NIR_ANO_17 = b.BEN_NIR_PSA
    """).fetchone()
    assert linked > 0
    names = [n for (n,) in con.execute(f"SELECT PHA_MED_NOM FROM '{tmp_path}/ingest/IR_PHA_R/*.parquet'").fetchall()]
    assert any("É" in n for n in names if n)


@pytest.mark.parametrize("problem", ["wrong_key", "missing_key", "tampered_vault", "argon2_changed"])
def test_key_or_vault_problems_stop_ingest_before_any_output(synth_delivery, tmp_path, problem):
    """Wrong or missing key, damaged vault, changed argon2 parameters: exit 1 with a message naming
    the key or vault, and nothing written to the lake (not even staging directories)."""
    from spark_jobs.ingest import main
    from spark_jobs.keys import LocalKeyFile

    ingest_delivery("duckdb", synth_delivery, tmp_path / "first", run_id="first")
    vault = tmp_path / "first" / "vault"
    key = region_key_file(tmp_path / "first" / "vault-keys").path
    argon2 = list(FAST_ARGON2_ARGS)
    if problem == "wrong_key":
        key = LocalKeyFile.create(tmp_path / "other.key").path
    elif problem == "missing_key":
        key = tmp_path / "nowhere.key"
    elif problem == "tampered_vault":
        delta = next((vault / "pending").iterdir())
        blob = bytearray(delta.read_bytes())
        blob[-3] ^= 1
        delta.write_bytes(bytes(blob))
    else:
        argon2[1] = "2"
    lake = tmp_path / "lake"
    code = main(["--engine", "duckdb", "--input", str(synth_delivery), "--output", str(lake / "ingest"),
                 "--quarantine", str(lake / "quarantine"), "--report", str(tmp_path / "r.json"), "--release", "r",
                 "--run-id", "x", "--vault", str(vault), "--key-file", str(key), *argon2])
    assert code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    expected = {"wrong_key": "wrong key", "missing_key": "nowhere.key: missing",
                "tampered_vault": "fails authentication", "argon2_changed": "every pseudonym would change"}[problem]
    assert report["status"] == "failed" and expected in report["error"], report["error"]
    assert not lake.exists()


def test_linkage_preserved_against_the_truth(duckdb_run, synth_delivery):
    """Every patient of a true PMSI stay appears, under the same pseudonym, in the PMSI chaining table,
    in IR_BEN_R and (when the patient has outpatient care) in ER_PRS_F."""
    import csv

    from spark_jobs.vault import Vault

    out, _ = duckdb_run
    mapping, _ = Vault(out / "vault", region_key_file(out / "vault-keys")).load(include_pending=True)
    with open(synth_delivery / "_truth" / "events" / "stays.csv", encoding="utf-8") as fh:
        stay_patients = {row["patient_id"] for row in csv.DictReader(fh)}
    with open(synth_delivery / "_truth" / "events" / "consults.csv", encoding="utf-8") as fh:
        dcir_patients = {row["patient_id"] for row in csv.DictReader(fh)}
    con = duckdb.connect()

    def pseudonyms(sql):
        return {p for (p,) in con.execute(sql.format(lake=out / "ingest")).fetchall()}

    pmsi = pseudonyms("SELECT NIR_ANO_17 FROM read_parquet('{lake}/T_*aaC/*/*.parquet', union_by_name = true)")
    ben = pseudonyms("SELECT BEN_NIR_PSA FROM '{lake}/IR_BEN_R/*.parquet'")
    prs = pseudonyms("SELECT BEN_NIR_PSA FROM '{lake}/ER_PRS_F/*.parquet'")
    assert stay_patients and all(len(mapping[p]) == 64 for p in stay_patients)
    assert {mapping[p] for p in stay_patients} <= pmsi & ben
    both = stay_patients & dcir_patients
    assert both and {mapping[p] for p in both} <= prs
    assert not (pmsi | ben | prs) & set(mapping)  # no raw value in the lake


def test_another_pepper_gives_other_pseudonyms(duckdb_run, synth_delivery, tmp_path):
    """Same release, another region key (pepper): not one pseudonym in common; same rows otherwise."""
    from spark_jobs.ingest import Pseudonymisation, run_ingest
    from spark_jobs.delivery import IngestConfig
    from spark_jobs.engines import open_engine
    from spark_jobs.keys import LocalKeyFile
    from spark_jobs.vault import Vault

    from helpers import FAST_ARGON2

    out, first = duckdb_run
    with open_engine("duckdb") as eng:
        other = run_ingest(eng, synth_delivery, tmp_path / "ingest", tmp_path / "quarantine", IngestConfig.load(), "o",
                           Pseudonymisation(Vault(tmp_path / "vault", LocalKeyFile.create(tmp_path / "k.key")), FAST_ARGON2))
    assert other["totals"] == first["totals"]
    con = duckdb.connect()
    a = {p for (p,) in con.execute(f"SELECT BEN_NIR_PSA FROM '{out}/ingest/IR_BEN_R/*.parquet'").fetchall()}
    b = {p for (p,) in con.execute(f"SELECT BEN_NIR_PSA FROM '{tmp_path}/ingest/IR_BEN_R/*.parquet'").fetchall()}
    assert len(a) == len(b) == first["tables"]["IR_BEN_R"]["rows"] and not a & b


def test_invalid_bytes_give_a_clear_error_without_the_line(synth_delivery, tmp_path):
    """A file that is not valid UTF-8: exit 1 naming the file, and no line (identifiers) in the output."""
    import shutil

    from spark_jobs.ingest import main

    delivery = tmp_path / "d"
    shutil.copytree(synth_delivery, delivery)
    raw = (delivery / "IR_BEN_R.csv").read_bytes().split(b"\n")
    raw[1] = raw[1].replace(b";", b"\xff;", 1)
    (delivery / "IR_BEN_R.csv").write_bytes(b"\n".join(raw))
    first_id = raw[1].split(b";")[0].replace(b"\xff", b"").decode()
    proc = subprocess.run(
        [sys.executable, "-m", "spark_jobs.ingest", "--engine", "duckdb", "--input", str(delivery),
         "--output", str(tmp_path / "i"), "--quarantine", str(tmp_path / "q"), "--report", str(tmp_path / "r.json"),
         "--release", "r", "--run-id", "x", "--vault", str(tmp_path / "vault"),
         "--key-file", str(region_key_file(tmp_path / "keys").path), *FAST_ARGON2_ARGS],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "IR_BEN_R.csv: not valid utf-8" in proc.stdout
    assert first_id not in proc.stdout + proc.stderr
