"""Integration tests of clean, merge and model on synthetic deliveries with known ground truth.

The delivery's truth (`_truth/`) gives the rows each cleaning rule must remove and every event table
of the model; identifiers are compared through their pseudonyms (tests/truth.py). Every step also runs
on Spark and must give the same tables as on DuckDB, and a rerun must give the same bytes.
"""

from __future__ import annotations


import json
import logging
from pathlib import Path

import duckdb
import pytest

from helpers import ingest_delivery, run_steps_after_ingest, table_rows, table_schema, tree_bytes
from spark_jobs.report import truth_check
from truth import compare_with_truth

MODEL_EVENTS = ("patients", "deaths_by_source", "diagnoses", "procedures", "consults", "biology", "devices",
                "drug_dispensations", "stays", "cmuc", "costs_outpatient", "costs_hospital_stays", "costs_hospital_extras",
                "costs_patient_year")


@pytest.fixture(scope="module")
def duck_run(tmp_path_factory, synth_delivery):
    out = tmp_path_factory.mktemp("pipeline_duckdb")
    ingest = ingest_delivery("duckdb", synth_delivery, out)
    reports = run_steps_after_ingest("duckdb", out / "ingest", out)
    reports["ingest"] = {**ingest, "status": "success"}
    return out, reports


@pytest.fixture(scope="module")
def spark_run(tmp_path_factory, duck_run, spark):
    """The steps after ingest on Spark, from the same ingest zone (ingest itself is compared across
    engines in test_ingest_step)."""
    out = tmp_path_factory.mktemp("pipeline_spark")
    reports = run_steps_after_ingest("spark", duck_run[0] / "ingest", out, spark=spark)
    return out, reports


def test_attrition_and_event_counts_match_truth(duck_run, synth_truth):
    _, reports = duck_run
    check = truth_check(reports, synth_truth)
    assert check["checked"] == ["ingest", "clean", "model"]
    assert check["differences"] == []
    assert check["events_not_built"] == []  # every truth table is built, the cost tables included
    # every planted rule removed something, and the report names each rule
    removed = {**reports["clean_dcir"]["dropped_by_rule"], **reports["clean_pmsi"]["dropped_by_rule"]}
    for rule in ("dcir_for_information", "dcir_for_information_strict", "dcir_bse_prs_nat_0", "dcir_ete_ind_taa_1",
                 "dcir_regularisation", "pmsi_bad_chaining", "pmsi_geographic_finess_duplicate", "mco_error_ghm",
                 "ssr_error_gme", "had_error_ghpc", "mco_ghs_9999"):
        assert sum(removed[rule].values()) > 0, rule
    assert removed["dcir_regularisation"]["ER_PRS_F"] == (2 * synth_truth["regularisation"]["full_pairs"]
                                                          + synth_truth["regularisation"]["partial_pairs"])


def test_rows_in_equal_rows_out_plus_removed(duck_run):
    out, reports = duck_run
    for step in ("clean_dcir", "clean_pmsi"):
        for table, t in reports[step]["tables"].items():
            assert t["rows_read"] == t["rows"] + sum(t["dropped_by_rule"].values()), table
            assert len(table_rows(out / "clean" / step.split("_")[1] / table)) == t["rows"], table
    ingest = reports["ingest"]["tables"]
    for step in ("clean_dcir", "clean_pmsi"):
        for table, t in reports[step]["tables"].items():
            assert t["rows_read"] == ingest[table]["rows"], table  # clean reads everything ingest wrote


@pytest.mark.parametrize("table", MODEL_EVENTS)
def test_event_table_equals_truth(duck_run, synth_delivery, table):
    out, _ = duck_run
    only_truth, only_model = compare_with_truth(synth_delivery, out / "model", table)
    assert (only_truth[:5], only_model[:5]) == ([], [])


def test_death_reconciliation(duck_run, synth_truth):
    out, _ = duck_run
    con = duckdb.connect()
    deaths, incoherent = con.execute(
        f"SELECT count(death_date), sum(incoherent_death) FROM read_parquet('{out}/model/patients/*.parquet')"
    ).fetchall()[0]
    assert (deaths, incoherent) == (synth_truth["patients"]["deaths"], synth_truth["patients"]["incoherent_deaths"])
    assert incoherent > 0


def test_model_schema_is_the_declared_one(duck_run):
    from spark_jobs.model import load_model_schema

    out, _ = duck_run
    for table, spec in load_model_schema().items():
        assert table_schema(out / "model" / table) == [(c["name"], c["type"]) for c in spec["columns"]], table


def test_data_dictionary_is_up_to_date():
    from spark_jobs import datadict

    assert datadict.main(["--check"]) == 0, "run: python -m spark_jobs.datadict --write"


def test_merge_unifies_code_columns(duck_run):
    out, reports = duck_run
    con = duckdb.connect()
    kinds = dict(con.execute(f"""SELECT source_table, string_agg(DISTINCT code_column, ',') FROM
        read_parquet('{out}/merge/dcir/*/*.parquet', hive_partitioning = true) GROUP BY ALL""").fetchall())
    assert kinds == {"ER_PRS_F": "PRS_NAT_REF", "ER_PHA_F": "PHA_PRS_C13", "ER_BIO_F": "BIO_PRS_IDE",
                     "ER_TIP_F": "TIP_PRS_IDE", "ER_UCD_F": "UCD_UCD_COD", "ER_CAM_F": "CAM_PRS_IDE",
                     "ER_ETE_F": "ETB_EXE_FIN"}
    pmsi = set(con.execute(f"""SELECT DISTINCT source, code_column FROM
        read_parquet('{out}/merge/pmsi/*/*.parquet') WHERE item = 'procedure'""").fetchall())
    assert pmsi == {("MCO", "CDC_ACT"), ("SSR", "CCAM_ACT")}
    years = sorted(p.name for p in (out / "merge" / "dcir").iterdir())
    assert years == ["year=2016", "year=2017", "year=2018"]
    assert reports["merge"]["tables"]["dcir"]["rows"] == sum(reports["merge"]["tables"]["dcir"]["inputs"].values())


def test_engines_give_the_same_tables(duck_run, spark_run):
    duck, spark_out = duck_run[0], spark_run[0]
    compared = 0
    for zone in ("clean", "merge", "model"):
        for part in sorted((duck / zone).rglob("part-00000.parquet")):
            directory = part.parent
            other = spark_out / directory.relative_to(duck)
            assert table_schema(other) == table_schema(directory), directory
            assert table_rows(other) == table_rows(directory), directory
            compared += 1
    assert compared >= 36  # 7 DCIR + 13 PMSI clean tables, 3 + 3 merge years, 10 model tables
    for step in ("clean_dcir", "clean_pmsi"):
        assert spark_run[1][step]["dropped_by_rule"] == duck_run[1][step]["dropped_by_rule"]


def test_reruns_are_byte_identical_and_replace_the_output(duck_run, tmp_path):
    out, _ = duck_run
    before = {zone: tree_bytes(out / zone) for zone in ("clean", "merge", "model")}
    (out / "model" / "stale-file.txt").write_text("left by an older run")
    run_steps_after_ingest("duckdb", out / "ingest", out, run_id="rerun")
    after = {zone: tree_bytes(out / zone) for zone in ("clean", "merge", "model")}
    assert after == before
    leftovers = [p.name for zone in ("clean", "merge", "model") for p in (out / zone).parent.iterdir()
                 if "__staging" in p.name or "__old" in p.name]
    assert leftovers == []


def test_spark_reruns_are_byte_identical(duck_run, spark_run, spark):
    """The costliest SQL (claims netting, windows) and the model, rerun on Spark: same bytes."""
    from spark_jobs.clean import load_clean_config, run_clean
    from spark_jobs.delivery import IngestConfig
    from spark_jobs.engines import open_engine
    from spark_jobs.merge import load_model_config
    from spark_jobs.model import run_model

    out = spark_run[0]
    before = {zone: tree_bytes(out / zone) for zone in ("clean/dcir", "model")}
    icfg = IngestConfig.load(None)
    with open_engine("spark", spark=spark) as eng:
        run_clean(eng, "dcir", duck_run[0] / "ingest", out / "clean" / "dcir", icfg, load_clean_config(), "rerun")
        run_model(eng, out / "merge", duck_run[0] / "ingest", out / "model", icfg, load_model_config(), "rerun",
                  clean=out / "clean")
    assert {zone: tree_bytes(out / zone) for zone in ("clean/dcir", "model")} == before


@pytest.fixture(scope="module")
def variant_run(tmp_path_factory):
    """A CNAM study extract: NUM_ENQ as the patient column, `;`, dd/MM/yyyy dates, Latin-1, and only
    some tables: no devices (ER_TIP_F), no ALD (IR_IMB_R), no CepiDc causes (KI_ECD_R), no HAD."""
    import yaml

    from dataclasses import replace

    from snds_synth import generate
    from spark_jobs.profiles import load_profile

    root = tmp_path_factory.mktemp("variant")
    delivery = root / "delivery"
    generate(delivery, n=250, seed=3, years=(2016, 2018), dcir_dates="dmy", encoding="latin-1",
             id_column="NUM_ENQ", quiet=True)
    removed = ["ER_TIP_F.csv", "IR_IMB_R.csv", "KI_ECD_R.csv", *(p.name for p in delivery.glob("T_HAD*.csv"))]
    for name in removed:
        (delivery / name).unlink()
    profile = replace(load_profile("native"), encoding="latin-1", patient_id_column="NUM_ENQ")
    out = root / "lake"
    ingest_delivery("duckdb", delivery, out, profile=profile)
    return delivery, out, None


def test_variant_delivery_runs_without_code_changes(variant_run, caplog):
    delivery, out, config = variant_run
    with caplog.at_level(logging.WARNING):
        reports = run_steps_after_ingest("duckdb", out / "ingest", out, config=config)
    warned = " ".join(r.getMessage() for r in caplog.records)
    for table in ("ER_TIP_F", "T_HADaaB", "T_HADaaC", "IR_IMB_R"):
        assert f"no {table} in this release" in warned
    assert reports["model"]["missing_tables"] == ["IR_IMB_R"]
    assert reports["model"]["tables"]["devices"]["rows"] == 0
    assert "HAD" not in reports["merge"]["tables"]["pmsi"]["items"]
    # What the missing tables do not touch equals the truth.
    for table in ("consults", "biology", "drug_dispensations", "procedures", "cmuc", "deaths_by_source"):
        assert compare_with_truth(delivery, out / "model", table) == ([], []), table
    assert compare_with_truth(delivery, out / "model", "stays", keep=lambda r: r["source"] != "HAD") == ([], [])
    assert compare_with_truth(delivery, out / "model", "diagnoses",
                              keep=lambda r: r["source"] not in ("HAD", "ALD")) == ([], [])
    assert compare_with_truth(delivery, out / "model", "patients",
                              columns=["patient_id", "sex", "birth_year", "birth_month", "death_date",
                                       "incoherent_death"]) == ([], [])


@pytest.mark.parametrize("profile,variants", [("cnam_study", None), (None, "dcir_only"), (None, "pmsi_only")])
def test_real_format_variants_detected_and_matching_the_truth(tmp_path, profile, variants):
    """A CNAM study extract as the generator writes it (NUM_ENQ, SAS datetimes, Windows-1252, CRLF,
    float-written integers, 3-character return codes, decimal commas, catalogued tables the model does
    not use, an uncatalogued file, an SSR chaining table without FHO_RET/PMS_RET, stays admitted
    before the window) and partial extracts: ingested with the profile detected (PROFILE=auto), every
    step's counts and every event table equal the generator's truth."""
    from snds_synth import generate
    from spark_jobs.report import truth_check

    delivery = tmp_path / "d"
    generate(delivery, n=200, seed=11, years=(2016, 2018), profile=profile, variants=variants, quiet=True)
    reports = {"ingest": {**ingest_delivery("duckdb", delivery, tmp_path, truth=True, profile="auto"),
                          "status": "success"}}
    reports.update(run_steps_after_ingest("duckdb", tmp_path / "ingest", tmp_path))
    check = truth_check(reports, json.loads((delivery / "_truth" / "manifest.json").read_text()))
    assert check["status"] == "match", check["differences"][:10]
    if profile == "cnam_study":
        prof = reports["ingest"]["profile"]
        assert (prof["patient_id_column"], prof["encoding"], prof["decimal_separator"]) == ("NUM_ENQ", "cp1252", ",")
        assert reports["ingest"]["delivery"]["uncatalogued"] == [("ETUDE_CONSENTEMENT.csv", "ETUDE_CONSENTEMENT")]
        missing = reports["clean_pmsi"]["missing_rule_inputs"]
        assert {(m["table"], tuple(m["columns"]), m["effect"]) for m in missing} == {
            ("T_SSRaaC", ("FHO_RET", "PMS_RET"), "partial")}
    else:
        absent = reports["ingest"]["delivery"]["sources_absent"]
        assert ("PMSI_MCO" in absent) == (variants == "dcir_only") and ("DCIR" in absent) == (variants == "pmsi_only")
