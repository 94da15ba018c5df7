"""The feasibility report (spark_jobs/feasibility.py, sql/report/, config/nomenclatures/).

- masking: small counts and the cells that would give them away (secondary suppression);
- aggregates of a small hand-made model, on both engines, with exact expected values;
- the real pipeline on the session's synthetic delivery, checked against the generator's truth;
- the same aggregates on DuckDB and Spark;
- the page in headless Chromium: charts drawn, nothing fetched, no console error.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest

from spark_jobs import feasibility as fz
from spark_jobs import lakefs
from spark_jobs.engines import open_engine
from spark_jobs.model import load_model_schema

SCHEMA = load_model_schema()
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHARED_NOMENCLATURES = Path(__file__).resolve().parents[2] / "shared" / "snds" / "nomenclatures"
M, S = fz.MASKED_SMALL, fz.MASKED_SECONDARY


# --- masking ---------------------------------------------------------------------------------------

def test_small_counts_are_masked_zero_and_ten_are_not():
    cells = fz.Cells()
    for n in (0, 1, 9, 10, 250):
        cells.add(("n", n), n)
    cells.add(("events", "few patients"), 40, patients=3)
    cells.add(("events", "many patients"), 40, patients=10)
    cells.suppress()
    assert [cells.get(("n", n)) for n in (0, 1, 9, 10, 250)] == [0, M, M, 10, 250]
    assert cells.get(("events", "few patients")) == M
    assert cells.get(("events", "many patients")) == 40
    assert fz.MIN_PUBLISHED == 10 and M == "<10"


def test_a_total_cannot_give_away_a_masked_part():
    cells = fz.Cells()
    total = cells.add(("total",), 45)
    parts = [cells.add(("p", n), n) for n in (4, 0, 12, 29)]
    cells.relate(total, parts)
    cells.suppress()
    # 45 - 12 - 29 would be the 4: the smallest other non-zero part is masked too.
    assert [cells.get(p) for p in parts] == [M, 0, S, 29]
    assert cells.get(total) == 45


def test_a_lone_small_part_masks_its_total():
    cells = fz.Cells()
    total = cells.add(("total",), 7)
    outer = cells.add(("outer",), 107)
    parts = [cells.add(("p", 1), 7), cells.add(("p", 2), 0)]
    cells.relate(total, parts)
    cells.relate(outer, [total, cells.add(("rest",), 100)])
    cells.suppress()
    assert cells.get(total) == M
    # outer = total + rest: the masked total would come back from 107 - 100
    assert {cells.get(("rest",)), cells.get(outer)} & {S}


def test_masking_follows_relations_across_tables_and_equal_counts():
    """A grid with row and column totals (the cleaning rules per table) and an events count equal to
    its patients count: no relation may be left with exactly one masked member."""
    cells = fz.Cells()
    grid = {("r1", "c1"): 3, ("r1", "c2"): 50, ("r2", "c1"): 40, ("r2", "c2"): 60}
    for k, v in grid.items():
        cells.add(("g", *k), v)
    for r in ("r1", "r2"):
        cells.relate(cells.add(("row", r), sum(v for k, v in grid.items() if k[0] == r)),
                     [("g", r, c) for c in ("c1", "c2")])
    for c in ("c1", "c2"):
        cells.relate(cells.add(("col", c), sum(v for k, v in grid.items() if k[1] == c)),
                     [("g", r, c) for r in ("r1", "r2")])
    events = cells.add(("events",), 60)
    cells.relate(events, [("g", "r2", "c2")])  # the same number shown twice
    cells.suppress()
    masked = {k for k in cells.values if isinstance(cells.get(k), str)}
    assert ("g", "r1", "c1") in masked and {("g", "r1", "c2"), ("g", "r2", "c1"), ("g", "r2", "c2")} <= masked
    assert ("events",) in masked
    for total, parts in cells.relations:
        assert len([k for k in (total, *parts) if k in masked]) != 1, (total, parts)
    assert cells.totals() == {"cells": len(cells.values), "masked_small": 1, "masked_secondary": len(masked) - 1}


def test_shares_of_masked_counts_are_masked():
    cells = fz.Cells()
    num, small, den = cells.add(("n",), 30), cells.add(("s",), 4), cells.add(("d",), 120)
    zero = cells.add(("z",), 0)
    cells.suppress()
    assert cells.share(num, den) == 25.0
    assert cells.share(small, den) == S
    assert cells.share(num, small) == S
    assert cells.share(num, zero) is None


def test_gate_values_and_messages_mask_small_counts():
    assert fz._gate_observed({"observed": 3}) == M
    assert fz._gate_observed({"observed": 0}) == 0
    assert fz._gate_observed({"observed": 12}) == 12
    assert fz._gate_observed({"observed": 0.01, "total": 300}) == M      # 3 rows of 300
    assert fz._gate_observed({"observed": 0.5, "total": 300}) == 0.5
    gates = fz._gates({"gate_clean": None, "gate_model": {"status": "success", "checks": [
        {"name": "k", "table": "t", "severity": "blocking", "status": "fail", "observed": 3, "threshold": 0,
         "message": "3 duplicate keys of 2,000 (0.15%) in 12 files"}]}})
    assert gates["gate_clean"] == {"present": False}
    assert gates["gate_model"]["checks"][0]["message"] == "<10 duplicate keys of 2,000 (0.15%) in 12 files"


# --- nomenclatures ---------------------------------------------------------------------------------

def test_nomenclature_extraction_is_deterministic_and_normalised(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "IR_CIM_V.csv").write_text("CIM_COD;CIM_LIB;TEC_COL\nc66.9 ;Tumeur  maligne;0\nA00;Choléra;0\n"
                                      "A00;second label;0\n", encoding="utf-8")
    (src / "IR_CCAM_V63.csv").write_text('"CAM_PRS_IDE_COD";"CAM_PRS_IDE_LIB";"CAM_PRS_RGT"\n'
                                         '"ZZQA002";"Échographie; peropératoire";"ATM"\n', encoding="utf-8")
    (src / "openmedic_ATC5.csv").write_text("ATC5;Libellé ATC5\nN02BE01;PARACETAMOL\nN02B;AUTRES\n", encoding="utf-8")
    counts = fz.extract_nomenclatures(src, tmp_path / "a")
    fz.extract_nomenclatures(src, tmp_path / "b")
    assert counts == {"icd10.csv": 2, "ccam.csv": 1, "atc.csv": 2}
    for name in counts:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "icd10.csv").read_text(encoding="utf-8") == "code;label\nA00;Choléra\nC669;Tumeur maligne\n"
    assert fz.load_labels(tmp_path / "a", "ccam.csv") == {"ZZQA002": "Échographie; peropératoire"}
    assert fz.load_labels(tmp_path / "a", "atc.csv") == {"N02B": "AUTRES", "N02BE01": "PARACETAMOL"}


def test_shipped_nomenclatures_are_small_and_regenerate_from_the_shared_sources(tmp_path):
    shipped = fz.resource(fz.NOMENCLATURES_DIR)
    for name, *_ in fz.NOMENCLATURES:
        assert (shipped / name).stat().st_size < 1_500_000, name
    labels = fz.load_labels(shipped, "icd10.csv")
    assert labels["J45"] == "Asthme" and len(labels) > 10_000
    if not SHARED_NOMENCLATURES.is_dir():
        pytest.skip(f"{SHARED_NOMENCLATURES}: the shared SNDS nomenclatures are not on this machine")
    fz.extract_nomenclatures(SHARED_NOMENCLATURES, tmp_path)
    for name, *_ in fz.NOMENCLATURES:
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), name


# --- a hand-made model -----------------------------------------------------------------------------

def pid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


D = dt.date.fromisoformat


def hand_model() -> dict[str, list[dict]]:
    """55 patients, care in 2019-2020 (reference date 2020-12-31):
    A 15 men born 1978 (40-44), a consult and 2 paracetamol dispensations in 2020, 10 of them CMU-C;
    B 12 women born 2000 (20-24), consults in 2019 and 2020, asthma (J45) in 2020;
    C 3 women born 1950 (70-74), a consult and an echography in 2020, diabetes ALD since 2001;
    D 11 men dead in 2019, IR_BEN_R and DCIR on the same date;
    E 10 women dead in 2019, IR_BEN_R and PMSI 10 days apart (incoherent);
    F 2 men born 1920 (95+); G one patient of unknown sex, one without birth year (an undated diagnosis)."""
    t: dict[str, list[dict]] = defaultdict(list)

    def patient(name, sex, birth_year, death=None, incoherent=0):
        t["patients"].append({"patient_id": pid(name), "sex": sex, "birth_year": birth_year, "birth_month": 1,
                              "death_date": D(death) if death else None, "incoherent_death": incoherent})

    for i in range(15):
        p = f"A{i}"
        patient(p, 1, 1978)
        t["consults"].append({"patient_id": pid(p), "date": D("2020-03-01"), "PRS_NAT_REF": 1111, "PSE_SPE_COD": 1})
        for day in ("2020-03-01", "2020-09-01"):
            t["drug_dispensations"].append({"patient_id": pid(p), "date": D(day), "cip13": "3400930000001",
                                            "atc": "N02BE01", "quantity": 1})
        if i < 10:
            t["cmuc"].append({"patient_id": pid(p), "year": 2020})
    for i in range(12):
        p = f"B{i}"
        patient(p, 2, 2000)
        for day in ("2019-06-01", "2020-06-01"):
            t["consults"].append({"patient_id": pid(p), "date": D(day), "PRS_NAT_REF": 1111, "PSE_SPE_COD": 1})
        t["diagnoses"].append({"patient_id": pid(p), "code": "J45", "source": "MCO", "diagnosis_type": "DP",
                               "date": D("2020-01-01"), "year": 2020})
    for i in range(3):
        p = f"C{i}"
        patient(p, 2, 1950)
        t["consults"].append({"patient_id": pid(p), "date": D("2020-02-01"), "PRS_NAT_REF": 1111, "PSE_SPE_COD": 1})
        t["procedures"].append({"patient_id": pid(p), "code": "YYYY028", "date": D("2020-02-01"), "source": "DCIR"})
        t["diagnoses"].append({"patient_id": pid(p), "code": "E11", "source": "ALD", "diagnosis_type": "ALD",
                               "date": D("2001-05-01"), "year": 2001})
    for i in range(11):
        p = f"D{i}"
        patient(p, 1, 1940, "2019-02-01")
        for source in ("IR_BEN_R", "DCIR"):
            t["deaths_by_source"].append({"patient_id": pid(p), "source": source, "death_date": D("2019-02-01")})
    for i in range(10):
        p = f"E{i}"
        patient(p, 2, 1945, "2019-04-11", incoherent=1)
        t["deaths_by_source"].append({"patient_id": pid(p), "source": "IR_BEN_R", "death_date": D("2019-04-01")})
        t["deaths_by_source"].append({"patient_id": pid(p), "source": "PMSI", "death_date": D("2019-04-11")})
    for i in range(2):
        patient(f"F{i}", 1, 1920)
    patient("G0", 9, 1990)
    patient("G1", 2, None)
    t["diagnoses"].append({"patient_id": pid("G1"), "code": "Z00", "source": "MCO", "diagnosis_type": "DP",
                           "date": None, "year": 2020})
    return t


def write_model(root: Path, tables: dict[str, list[dict]]) -> Path:
    """Every model table as the model step writes it (model.yaml's columns and types), some empty."""
    con = duckdb.connect()
    for table, spec in SCHEMA.items():
        columns = spec["columns"]
        typed = ", ".join(f"{c['name']} {c['type']}" for c in columns)
        con.execute(f"CREATE TABLE {table} ({typed})")
        rows = [[r.get(c["name"]) for c in columns] for r in tables.get(table, [])]
        if rows:
            con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in columns)})", rows)
        (root / table).mkdir(parents=True)
        con.execute(f"COPY {table} TO '{root / table / 'part-00000.parquet'}' (FORMAT parquet)")
    return root


GATE_MODEL = {
    "step": "gate_model", "stage": "model", "status": "success", "engine": "duckdb", "release": "R",
    "run_id": "t", "started_at": "2026-01-01T00:00:00+00:00", "seconds": 1.0,
    "checks": [
        {"name": "patients_key_unique", "kind": "unique", "table": "patients", "severity": "blocking",
         "status": "pass", "observed": 0, "threshold": 0, "total": 55,
         "description": "patient_id is unique in patients", "message": "0 duplicate keys"},
        {"name": "deaths_incoherent_share", "kind": "ratio", "table": "patients", "severity": "warning",
         "status": "fail", "observed": 0.18, "threshold": 0.05, "total": 55,
         "description": "at most 5 % incoherent deaths", "message": "10 of 55 patients"},
        {"name": "orphan_events", "kind": "foreign_key", "table": "consults", "severity": "warning",
         "status": "fail", "observed": 4, "threshold": 0, "total": 42,
         "description": "consults of known patients", "message": "4 consults of unknown patients"},
        {"name": "drift_rows", "kind": "drift", "table": "consults", "severity": "warning",
         "status": "skipped", "observed": None, "threshold": 0.2, "total": 42,
         "description": "rows within 20 % of the previous release", "message": "no previous release"},
    ],
    "totals": {"checks": 4, "passed": 1, "failed": 0, "warnings": 2, "skipped": 1},
}


@pytest.fixture(scope="module")
def hand_zone(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hand")
    model = write_model(root / "model", hand_model())
    run_dir = root / "runs" / "release=R" / "t"
    lakefs.write_json(run_dir / "steps" / "gate_model.json", GATE_MODEL)
    return model, run_dir


def test_hand_made_model_aggregates(engine, hand_zone):
    model, run_dir = hand_zone
    a = fz.build_report(engine, model, run_dir, None, "R", "t")
    assert a["care_period"] == {"first_year": 2019, "last_year": 2020, "reference_date": "2020-12-31"}

    p = a["pyramid"]
    men, women = [0] * 20, [0] * 20
    men[8], men[19], women[4], women[14] = 15, M, 12, M
    assert (p["men"], p["women"]) == (men, women)
    assert (p["unknown_sex"], p["unknown_age"], p["not_alive"]) == (M, M, 21)

    epy = {t["table"]: [(y["year"], y["events"], y["patients"]) for y in t["years"]]
           for t in a["events_per_year"]["tables"]}
    assert epy == {
        "diagnoses": [("before 2019", M, M), ("2020", 12, 12), ("no date", M, M)],
        "procedures": [("2020", M, M)],
        "consults": [("2019", 12, 12), ("2020", 30, 30)],
        "biology": [], "devices": [], "stays": [],
        "drug_dispensations": [("2020", 30, 15)],
        "deaths_by_source": [("2019", 42, 21)],
        "cmuc": [("2020", 10, 10)],
    }
    assert a["cmuc"] == [
        {"year": 2019, "cmuc_patients": 0, "patients_with_care": 12, "share": 0.0},
        {"year": 2020, "cmuc_patients": 10, "patients_with_care": 30, "share": 33.3},
    ]

    d = a["deaths"]
    assert d["patients_with_source"] == 21 and d["incoherent_death"] == 10
    assert d["combinations"] == [{"sources": ["IR_BEN_R", "DCIR"], "patients": 11},
                                 {"sources": ["IR_BEN_R", "PMSI"], "patients": 10}]
    pairs = {tuple(x["sources"]): (x["both"], x["same_date"], x["different_dates"]) for x in d["pairs"]}
    assert pairs == {("IR_BEN_R", "DCIR"): (11, 11, 0), ("IR_BEN_R", "PMSI"): (10, 0, 10),
                     ("IR_BEN_R", "KI_CCI_R"): (0, 0, 0), ("DCIR", "PMSI"): (0, 0, 0),
                     ("DCIR", "KI_CCI_R"): (0, 0, 0), ("PMSI", "KI_CCI_R"): (0, 0, 0)}

    top = {k: [(c["code"], c["label"], c["patients"], c["events"]) for c in v["codes"]] for k, v in a["top_codes"].items()}
    assert top == {
        "diagnoses": [("J45", "Asthme", 12, 12), ("E11", "Diabète sucré de type 2", M, M),
                      ("Z00", fz.load_labels(fz.resource(fz.NOMENCLATURES_DIR), "icd10.csv")["Z00"], M, M)],
        "drugs": [("N02BE01", "PARACETAMOL", 15, 30)],
        "procedures": [("YYYY028", "Guidage échographique", M, M)],
    }

    stages = {s["label"]: s["rows"] for s in a["attrition"]["stages"]}
    assert stages == {"model rows: biology": 0, "model rows: cmuc": 10, "model rows: consults": 42,
                      "model rows: deaths_by_source": 42, "model rows: devices": 0, "model rows: diagnoses": 16,
                      "model rows: drug_dispensations": 30, "model rows: patients": 55, "model rows: procedures": M,
                      "model rows: stays": 0, "model rows: costs_outpatient": 0, "model rows: costs_hospital_stays": 0,
                      "model rows: costs_hospital_extras": 0, "model rows: costs_patient_year": 0}
    assert a["attrition"]["missing_reports"] == ["ingest", "clean_dcir", "clean_pmsi", "merge", "model"]

    assert a["gates"]["gate_clean"] == {"present": False}
    checks = {c["name"]: (c["status"], c["observed"], c["message"]) for c in a["gates"]["gate_model"]["checks"]}
    assert checks == {"patients_key_unique": ("pass", 0, "0 duplicate keys"),
                      "deaths_incoherent_share": ("fail", 0.18, "10 of 55 patients"),
                      "orphan_events": ("fail", M, "<10 consults of unknown patients"),
                      "drift_rows": ("skipped", None, "no previous release")}
    assert a["totals"]["sections"] == 7 and a["totals"]["masked_small"] > 0
    assert_no_small_count(a)


def test_step_entry_point_writes_html_json_and_report(hand_zone, tmp_path):
    model, run_dir = hand_zone
    out = tmp_path / "run" / "feasibility.html"
    argv = ["--engine", "duckdb", "--model", str(model), "--run-dir", str(run_dir), "--output", str(out),
            "--report", str(tmp_path / "report.json"), "--release", "R", "--run-id", "t"]
    assert fz.main(argv) == 0
    first = out.read_bytes(), (tmp_path / "run" / "feasibility.json").read_bytes()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "success" and report["step"] == "feasibility_report"
    assert report["outputs"] == {"html": str(out), "json": str(tmp_path / "run" / "feasibility.json")}
    assert report["totals"]["sections"] == 7 and report["totals"]["html_bytes"] == len(first[0])
    with open_engine("duckdb") as eng:
        assert json.loads(first[1]) == fz.build_report(eng, model, run_dir, None, "R", "t")
    assert fz.main(argv) == 0  # same inputs, same bytes
    assert (out.read_bytes(), (tmp_path / "run" / "feasibility.json").read_bytes()) == first
    assert fz.main([*argv[:3], str(tmp_path / "nowhere"), *argv[4:]]) == 1
    assert "no Parquet files" in json.loads((tmp_path / "report.json").read_text())["error"]


# --- published values never hold a small count ----------------------------------------------------

#: Keys whose integers are not counts (positions, calendar years, configuration).
NOT_COUNTS = {"rank", "year", "first_year", "last_year", "threshold", "share", "gates", "masking", "totals"}


def assert_no_small_count(aggregates: dict) -> None:
    def walk(value, path):
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in NOT_COUNTS:
                    walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif isinstance(value, int) and not isinstance(value, bool):
            assert not 0 < value < fz.MIN_PUBLISHED, f"{path} = {value}"
    walk(aggregates, "")


def assert_page_has_no_small_count(page: str) -> None:
    body = page.split('<section id="gates">')[0]  # gate thresholds are configuration
    for cell in re.findall(r'<td class="num">([^<]*)</td>', body):
        assert not re.fullmatch(r"[1-9]", cell), cell
    for label in re.findall(r'<text [^>]*class="value"[^>]*>([^<]*)</text>', body):
        assert not re.fullmatch(r"[1-9]( %)?", label), label


# --- the real pipeline on the synthetic delivery ---------------------------------------------------

@pytest.fixture(scope="module")
def synth_release(synth_pipeline, tmp_path_factory):
    """The session's synthetic delivery through ingest, clean, merge and model (DuckDB), with the run's
    step reports and two gate reports (their checks as the quality step writes them)."""
    out, reports = synth_pipeline
    run_dir = tmp_path_factory.mktemp("feasibility") / "runs" / "release=S" / "t"
    for step, sections in reports.items():
        lakefs.write_json(run_dir / "steps" / f"{step}.json",
                          {"step": step, "started_at": "2026-01-02T03:04:05+00:00", **sections})
    lakefs.write_json(run_dir / "steps" / "gate_model.json", GATE_MODEL)
    lakefs.write_json(run_dir / "steps" / "gate_clean.json", {**GATE_MODEL, "step": "gate_clean", "checks": [
        {"name": "clean_rows_accounted", "kind": "accounting", "table": "ER_PRS_F", "severity": "blocking",
         "status": "pass", "observed": 0, "threshold": 0, "total": 100, "description": "rows in = out + removed",
         "message": "all rows accounted for"}], "totals": {"checks": 1, "passed": 1, "failed": 0, "warnings": 0,
                                                           "skipped": 0}})
    with open_engine("duckdb") as eng:
        aggregates = fz.build_report(eng, out / "model", run_dir, None, "S", "t")
    return out, run_dir, aggregates


def truth_csv(delivery: Path, table: str) -> list[dict]:
    with open(delivery / "_truth" / "events" / f"{table}.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def assert_published(published, truth: int, what: str, patients: int | None = None) -> None:
    """A published count (of events of `patients`) against the truth: equal, or masked as the rule says."""
    small = lambda n: 0 < n < fz.MIN_PUBLISHED  # noqa: E731
    if published == M:
        assert small(truth) or (patients is not None and small(patients)), f"{what}: {truth} masked as small"
    elif published == S:  # masked to protect a small one: never itself small
        assert truth >= fz.MIN_PUBLISHED, f"{what}: {truth} masked as secondary"
    else:
        assert published == truth, f"{what}: published {published}, truth {truth}"
        assert not small(truth) and not (patients is not None and small(patients)), f"{what}: small count published"


def test_synthetic_release_matches_the_generator_truth(synth_release, synth_delivery, synth_truth):
    _, _, a = synth_release
    stages = {s["label"]: s["rows"] for s in a["attrition"]["stages"]}
    for table, n in synth_truth["events"].items():
        if table in SCHEMA:
            assert_published(stages[f"model rows: {table}"], n, f"model rows {table}")
    assert a["attrition"]["missing_reports"] == []
    assert stages["raw rows read"] == sum(f["rows"] for f in synth_truth["files"].values())

    dated = {"diagnoses": "date", "procedures": "date", "consults": "date", "biology": "date", "devices": "date",
             "drug_dispensations": "date", "stays": "start_date", "deaths_by_source": "death_date", "cmuc": "year"}
    truth = {t: truth_csv(synth_delivery, t) for t in [*dated, "patients"]}
    care_years = [int(r[c][:4]) for t, c in (("procedures", "date"), ("consults", "date"), ("biology", "date"),
                                             ("devices", "date"), ("drug_dispensations", "date"),
                                             ("stays", "start_date"), ("stays", "end_date"))
                  for r in truth[t] if r[c]]
    first, last = min(care_years), max(care_years)
    assert a["care_period"] == {"first_year": first, "last_year": last, "reference_date": f"{last}-12-31"}

    # events and patients per year per table
    for t in a["events_per_year"]["tables"]:
        events, patients = defaultdict(int), defaultdict(set)
        for r in truth[t["table"]]:
            y = int(r[dated[t["table"]]][:4]) if r[dated[t["table"]]] else 0
            label = fz._year_label(0 if not y else first - 1 if y < first else last + 1 if y > last else y, first, last)
            events[label] += 1
            patients[label].add(r["patient_id"])
        assert [y["year"] for y in t["years"]] == sorted(events, key=lambda k: (k == "no date", not k.startswith("before"), k))
        for y in t["years"]:
            assert_published(y["events"], events[y["year"]], f"{t['table']} {y['year']} events",
                             len(patients[y["year"]]))
            assert_published(y["patients"], len(patients[y["year"]]), f"{t['table']} {y['year']} patients")

    # population pyramid
    cells = defaultdict(int)
    for r in truth["patients"]:
        if r["death_date"] and int(r["death_date"][:4]) <= last:
            cells["not_alive"] += 1
        elif r["sex"] not in ("1", "2"):
            cells["unknown_sex"] += 1
        elif not r["birth_year"] or int(r["birth_year"]) > last:
            cells["unknown_age"] += 1
        else:
            cells[(int(r["sex"]), min((last - int(r["birth_year"])) // 5, 19))] += 1
    for sex, name in fz.SEXES:
        for band, published in enumerate(a["pyramid"][name]):
            assert_published(published, cells[(sex, band)], f"pyramid {name} {fz.AGE_BANDS[band]}")
    for status in ("unknown_sex", "unknown_age", "not_alive"):
        assert_published(a["pyramid"][status], cells[status], status)
    assert cells["not_alive"] >= 0 and sum(cells.values()) == synth_truth["patients"]["n"]

    # CMU-C share
    care = defaultdict(set)
    for t, c in (("procedures", "date"), ("consults", "date"), ("biology", "date"), ("devices", "date"),
                 ("drug_dispensations", "date"), ("stays", "start_date"), ("stays", "end_date"), ("cmuc", "year")):
        for r in truth[t]:
            if r[c]:
                care[int(r[c][:4])].add(r["patient_id"])
    cmuc = defaultdict(set)
    for r in truth["cmuc"]:
        cmuc[int(r["year"])].add(r["patient_id"])
    assert [r["year"] for r in a["cmuc"]] == list(range(first, last + 1))
    for r in a["cmuc"]:
        assert_published(r["cmuc_patients"], len(cmuc[r["year"]]), f"cmuc {r['year']}")
        assert_published(r["patients_with_care"], len(care[r["year"]]), f"care {r['year']}")
        if isinstance(r["cmuc_patients"], int) and isinstance(r["patients_with_care"], int):
            assert r["share"] == round(100 * len(cmuc[r["year"]]) / len(care[r["year"]]), 1)
        else:
            assert r["share"] == S

    # top drugs (ATC) by patients
    by_atc = defaultdict(lambda: [set(), 0])
    for r in truth["drug_dispensations"]:
        if r["atc"]:
            by_atc[r["atc"]][0].add(r["patient_id"])
            by_atc[r["atc"]][1] += 1
    expected = sorted(((len(p), e, c) for c, (p, e) in by_atc.items()), key=lambda x: (-x[0], -x[1], x[2]))[:10]
    drugs = a["top_codes"]["drugs"]["codes"]
    assert [c["code"] for c in drugs] == [c for _, _, c in expected]
    for c, (p, e, _) in zip(drugs, expected):
        assert_published(c["patients"], p, f"drug {c['code']} patients")
        assert_published(c["events"], e, f"drug {c['code']} events", p)
        assert c["label"], f"no label for {c['code']}"

    # death sources: patients per combination
    sources = defaultdict(set)
    for r in truth["deaths_by_source"]:
        sources[r["patient_id"]].add(r["source"])
    combos = defaultdict(int)
    for s in sources.values():
        combos[tuple(x for x in fz.DEATH_SOURCES if x in s)] += 1
    assert {tuple(c["sources"]) for c in a["deaths"]["combinations"]} == set(combos)
    for c in a["deaths"]["combinations"]:
        assert_published(c["patients"], combos[tuple(c["sources"])], f"deaths {c['sources']}")
    assert_published(a["deaths"]["incoherent_death"], synth_truth["patients"]["incoherent_deaths"], "incoherent")
    assert_no_small_count(a)


@pytest.mark.spark
def test_aggregates_are_identical_on_duckdb_and_spark(synth_release, spark):
    out, run_dir, duckdb_aggregates = synth_release
    with open_engine("spark", spark=spark) as eng:
        spark_aggregates = fz.build_report(eng, out / "model", run_dir, None, "S", "t")
    assert spark_aggregates == duckdb_aggregates
    assert fz.render_html(spark_aggregates) == fz.render_html(duckdb_aggregates)


# --- the page in a browser -------------------------------------------------------------------------

CHART_IDS = ["attrition-chart", "pyramid-chart", *[f"events-{t}" for t, _, _ in fz.EVENT_TABLES],
             "top-diagnoses", "top-drugs", "top-procedures", "deaths-chart", "cmuc-chart"]


def test_report_renders_in_headless_chromium(synth_release, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)"
    _, _, aggregates = synth_release
    page_html = fz.render_html(aggregates)
    assert_page_has_no_small_count(page_html)
    assert not re.search(r"(?:src|href)\s*=\s*[\"'](?!#)", page_html), "the page links to a resource"
    assert "url(" not in page_html and "<script" not in page_html and "@import" not in page_html
    html_path = tmp_path / "feasibility.html"
    html_path.write_text(page_html, encoding="utf-8")

    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html_path.as_uri(), wait_until="load")
            shot = tmp_path / "feasibility.png"
            page.screenshot(path=str(shot), full_page=True)

            for sid, _ in fz.SECTIONS:
                assert page.locator(f"section#{sid}").count() == 1, sid
            for chart in CHART_IDS:
                svg = page.locator(f"svg.chart#{chart}")
                assert svg.count() == 1, chart
                box = svg.bounding_box()
                assert box and box["width"] > 50 and box["height"] > 50, (chart, box)
                assert svg.locator("title").first.text_content(), chart
                bars = svg.locator("rect.bar")
                drawn = [b for b in bars.all() if (bb := b.bounding_box()) and bb["width"] > 0 and bb["height"] > 0]
                expected = {"events-biology", "events-devices", "events-stays"}  # may be empty tables
                assert drawn or chart in expected, f"{chart}: no bar drawn"
            assert page.locator("svg.chart#attrition-chart rect.bar").count() == len(aggregates["attrition"]["stages"])
            gate_rows = page.locator("#gates table.gates tbody tr")
            assert gate_rows.count() == len(GATE_MODEL["checks"]) + 1
            names = page.locator("#gates table.gates tbody tr td:first-child").all_text_contents()
            assert sorted(names) == sorted([c["name"] for c in GATE_MODEL["checks"]] + ["clean_rows_accounted"])
            assert page.locator("#gates .badge.fail").count() == 0 and page.locator("#gates .badge.warn").count() == 2
            masked = page.locator("td.masked").all_text_contents()
            assert M in masked, "no masked cell on the page"
            assert page.locator("svg.chart text.value", has_text=M).count() > 0
            header = page.locator("header").inner_text()
            assert "release" in header and aggregates["code_version"] in header and "<10" in header
        finally:
            browser.close()
    assert errors == []
    assert requests == [html_path.as_uri()], requests
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 1000 and height > 2000, (width, height)
