"""Study cohorts (spark_jobs/cohort.py, sql/cohort/, plugins/snds_operators/cohorts.py).

- Study files: the schema's errors name the file and the field.
- The SQL on hand-made model tables: exact index dates, ages, follow-up ends and attrition; the same
  SQL transpiled to Trino, read back, gives the same rows.
- The real pipeline on the session's synthetic delivery, published, then the cohort step: the index
  population and the attrition equal those computed here, in Python, from the generator's truth.
- Versions: two published runs give two cohort versions, both readable; a rebuild is byte-identical.
- The DAG: scheduled on the model Asset, one task per study, a task building from an Asset event.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest
import sqlglot
import yaml

from helpers import write_test_region
from spark_jobs import cohort
from spark_jobs.model import load_model_schema
from spark_jobs.publish import publish
from spark_jobs.steprun import run_tag
from truth import truth_rows

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = PROJECT_ROOT / "config" / "studies" / "t2d_treated.yaml"
RELEASE = "2018-12"
RUN_A, RUN_B = "manual__2019-01-05T09:00:00+00:00", "scheduled__2019-02-01T00:00:00+00:00"
INDEX_COLUMNS = ["patient_id", "index_date", "index_vocabulary", "index_code", "sex", "birth_year", "age", "cmuc",
                 "first_care_date", "follow_up_end", "follow_up_end_reason", "follow_up_days"]
CRITERIA = ["population", "qualifying_event", "sex", "age", "cmuc", "look_back", "exclusions"]

BASE_STUDY = {
    "name": "bad", "description": "a study",
    "index_window": {"start": "2017-01-01", "end": "2017-12-31"}, "study_end": "2018-12-31",
    "inclusion": {"atc": ["A10B"]},
}


def write_study(directory: Path, data: dict, name: str | None = None) -> Path:
    path = directory / f"{name or data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- study files ---------------------------------------------------------------------------------------
def _with(change: dict) -> dict:
    data = json.loads(json.dumps(BASE_STUDY))
    for dotted, value in change.items():
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        if value is ...:
            node.pop(leaf)
        else:
            node[leaf] = value
    return data


@pytest.mark.parametrize("change, message", [
    ({"inclusion.atc": [123]}, "bad.yaml: inclusion.atc.0: 123 is not of type 'string'"),
    ({"inclusion.atc": ["a10b"]}, "bad.yaml: inclusion.atc.0: 'a10b' is not a atc code prefix"),
    ({"inclusion.icd10": ["E11.9"]}, "bad.yaml: inclusion.icd10.0: 'E11.9' is not a icd10 code prefix"),
    ({"inclusion.atc": ...}, "bad.yaml: inclusion: at least one code prefix is needed"),
    ({"index_window": ...}, "bad.yaml: index_window: missing"),
    ({"index_window.end": ...}, "bad.yaml: index_window.end: missing"),
    ({"sexe": [1]}, "bad.yaml: sexe: unknown field"),
    ({"inclusion.diagnosis_types": ["XX"]}, "bad.yaml: inclusion.diagnosis_types.0: 'XX' is not one of"),
    ({"sex": [3]}, "bad.yaml: sex.0: 3 is not one of [1, 2, 9]"),
    ({"age.min": -1}, "bad.yaml: age.min: -1 is less than the minimum of 0"),
    ({"age": {"min": 80, "max": 18}}, "bad.yaml: age.max: 18 is below age.min 80"),
    ({"cmuc": "yes"}, "bad.yaml: cmuc: 'yes' is not one of ['required', 'excluded', 'any']"),
    ({"look_back_days": "365"}, "bad.yaml: look_back_days: '365' is not of type 'integer'"),
    ({"index_window.start": "2017-02-30"}, "bad.yaml: index_window.start: '2017-02-30' is not a valid date"),
    ({"study_end": "17-12-31"}, "bad.yaml: study_end: '17-12-31' does not match"),
    ({"study_end": "2017-06-30"}, "bad.yaml: study_end: 2017-06-30 is before index_window.end 2017-12-31"),
    ({"index_window.start": "2018-01-01"}, "bad.yaml: index_window.end: 2017-12-31 is before index_window.start"),
    ({"exclusions": {"icd10": ["E10"]}}, "bad.yaml: exclusions.window_days: required when look_back_days is 0"),
    ({"exclusions": {"window_days": 30}}, "bad.yaml: exclusions: no code prefix"),
    ({"exclusions.ccam": ["HHFA0001"]}, "bad.yaml: exclusions.ccam.0: 'HHFA0001' is not a ccam code prefix"),
    ({"name": "other"}, "bad.yaml: name: 'other' must match the file name 'bad'"),
])
def test_invalid_study_files_name_the_field(tmp_path, change, message):
    path = write_study(tmp_path, _with(change), name="bad")
    with pytest.raises(cohort.StudyError) as err:
        cohort.load_study(path)
    assert message in str(err.value)


def test_unreadable_study_files_and_the_check_command(tmp_path, capsys):
    (tmp_path / "notyaml.yaml").write_text("name: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- 1\n")
    for name, message in (("notyaml", "notyaml.yaml: not valid YAML"),
                          ("list", "list.yaml: expected a mapping of study fields")):
        with pytest.raises(cohort.StudyError, match=message):
            cohort.load_study(tmp_path / f"{name}.yaml")
    bad = write_study(tmp_path, _with({"inclusion.atc": [123]}), name="bad")
    assert cohort.main(["--check", "--study", str(EXAMPLE), "--study", str(bad)]) == 1
    assert "error: bad.yaml: inclusion.atc.0: 123 is not of type 'string'" in capsys.readouterr().err
    assert cohort.main(["--check"]) == 0  # every study of config/studies is valid
    assert "t2d_treated.yaml: ok" in capsys.readouterr().out


def test_example_study_is_normalised():
    study = cohort.load_study(EXAMPLE)
    assert study["name"] == "t2d_treated" and study["window_start"] == "2017-01-01"  # YAML dates as text
    assert study["inclusion"]["atc"] == ["A10B"] and study["exclusions"]["icd10"] == ["E10"]
    assert study["exclusion_window_days"] == 365 and study["age_min"] == 18 and study["sex"] == [1, 2]
    assert [c["criterion"] for c in cohort.criteria(study)] == CRITERIA


# --- the SQL on hand-made model tables ------------------------------------------------------------------
HAND_STUDY = {
    "name": "hand", "description": "hand-made",
    "index_window": {"start": "2017-01-01", "end": "2017-12-31"}, "study_end": "2018-06-30",
    "inclusion": {"atc": ["A10B"], "icd10": ["E11"], "diagnosis_sources": ["MCO"]},
    "sex": [1, 2], "age": {"min": 18, "max": 80}, "cmuc": "required",
    "look_back_days": 180, "follow_up_days": 365,
    "exclusions": {"icd10": ["E10"], "window_days": 365},
}
D = dt.date.fromisoformat


def _patient(pid, sex=1, birth_year=1960, death=None, last_contact="2018-12-01"):
    return {"patient_id": pid, "sex": sex, "birth_year": birth_year, "birth_month": 6, "death_date": death,
            "incoherent_death": 0, "last_contact_date": last_contact}


def hand_model() -> dict[str, list[dict]]:
    """13 patients, each meant to stop at one criterion (or to be included with a known follow-up)."""
    pids = [f"p{i:02d}" for i in range(1, 14)]
    patients = [_patient(p) for p in pids]
    by_id = {p["patient_id"]: p for p in patients}
    by_id["p04"]["sex"] = 9                                  # fails sex
    by_id["p05"]["birth_year"] = 2000                        # 17 at index: fails age
    by_id["p06"]["birth_year"] = None                        # unknown age: fails age
    by_id["p10"]["death_date"] = "2017-10-01"                # follow-up ends at death
    by_id["p11"]["last_contact_date"] = "2017-06-30"         # ... at the last contact
    by_id["p13"]["death_date"] = "2017-01-10"                # death before index: follow-up of 0 days
    drug = lambda p, d, atc="A10BA02": {"patient_id": p, "date": d, "cip13": "3400930000000", "atc": atc,
                                        "quantity": 1, "ddd": 30}
    diag = lambda p, d, code, source="MCO", kind="DAS": {"patient_id": p, "code": code, "source": source,
                                                         "diagnosis_type": kind, "date": d, "year": int(d[:4])}
    drugs = [drug("p01", "2017-05-01"), drug("p01", "2017-03-01"), drug("p01", "2017-03-01", "A10BB09"),
             drug("p02", "2016-06-01"),                       # before the window: no index event
             drug("p04", "2017-02-01"), drug("p05", "2017-02-01"), drug("p06", "2017-02-01"),
             drug("p07", "2017-02-01"), drug("p08", "2017-02-01"), drug("p09", "2017-04-01"),
             drug("p10", "2017-04-01"), drug("p11", "2017-06-01"), drug("p13", "2017-02-15"),
             drug("p12", "2018-01-05"), drug("p12", "2016-11-01"),  # outside the window on both sides
             drug("p03", "2017-02-01", "A10AB01")]          # insulin: not A10B
    diagnoses = [diag("p01", "2017-03-01", "E119"),          # same day as p01's drugs: atc wins the tie
                 diag("p03", "2017-02-01", "E11", "ALD", "ALD"),  # ALD source not counted: no index event
                 diag("p09", "2016-12-01", "E10"),           # in the 365 days before index: excluded
                 diag("p10", "2015-01-01", "E109"),          # before the exclusion window: kept
                 diag("p11", "2017-06-01", "E10"),           # on the index date: not "before", kept
                 diag("p12", "2017-12-20", "E118")]          # icd10 index event
    cmuc = [{"patient_id": p, "year": 2017} for p in pids if p != "p07"] + [{"patient_id": "p07", "year": 2016}]
    consults = [{"patient_id": p, "date": "2016-01-10", "PRS_NAT_REF": 1111, "PSE_SPE_COD": 1}
                for p in pids if p not in ("p08", "p12")]
    consults.append({"patient_id": "p08", "date": "2017-01-15", "PRS_NAT_REF": 1111, "PSE_SPE_COD": 1})  # look-back
    stays = [{"patient_id": "p12", "source": "MCO", "eta_num": "1", "stay_id": "1", "start_date": "2016-02-01",
              "end_date": "2016-02-03"}]
    return {"patients": patients, "drug_dispensations": drugs, "diagnoses": diagnoses, "cmuc": cmuc,
            "consults": consults, "stays": stays, "procedures": [], "biology": [], "devices": []}


EXPECTED_HAND = [
    # patient, index date, vocabulary, code, sex, birth year, age, cmuc, first care, follow-up end, reason, days
    ("p01", "2017-03-01", "atc", "A10BA02", 1, 1960, 57, 1, "2016-01-10", "2018-03-01", "follow_up_days", 365),
    ("p10", "2017-04-01", "atc", "A10BA02", 1, 1960, 57, 1, "2016-01-10", "2017-10-01", "death", 183),
    ("p11", "2017-06-01", "atc", "A10BA02", 1, 1960, 57, 1, "2016-01-10", "2017-06-30", "last_contact", 29),
    ("p12", "2017-12-20", "icd10", "E118", 1, 1960, 57, 1, "2016-02-01", "2018-06-30", "study_end", 192),
    ("p13", "2017-02-15", "atc", "A10BA02", 1, 1960, 57, 1, "2016-01-10", "2017-02-15", "death", 0),
]
EXPECTED_HAND_ATTRITION = [13, 11, 10, 8, 7, 6, 5]


def load_tables(con, tables: dict[str, list[dict]], schema=None) -> None:
    """Model tables typed as sql/model/model.yaml declares them (columns a row lacks are NULL)."""
    spec = load_model_schema()
    for table, rows in tables.items():
        columns = spec[table]["columns"]
        name = f"{schema}.{table}" if schema else table
        typed = ", ".join(f'"{c["name"]}" {c["type"]}' for c in columns)
        con.execute(f"CREATE TABLE {name} ({typed})")
        for row in rows:
            con.execute(f"INSERT INTO {name} VALUES ({', '.join('?' for _ in columns)})",
                        [row.get(c["name"]) for c in columns])


def _text(rows):
    return [tuple(v.isoformat() if isinstance(v, dt.date) else v for v in r) for r in rows]


def test_cohort_sql_on_hand_made_tables(tmp_path):
    study = cohort.load_study(write_study(tmp_path, HAND_STUDY))
    con = duckdb.connect()
    load_tables(con, hand_model())
    sql = cohort.render_sql(study, {t: t for t in cohort.TABLES})
    got = con.execute(sql["index_population"])
    assert [d[0] for d in got.description] == INDEX_COLUMNS
    assert _text(got.fetchall()) == EXPECTED_HAND
    attrition = con.execute(sql["attrition"]).fetchall()
    assert [(r[0], r[1]) for r in attrition] == list(enumerate(CRITERIA))
    assert [r[3] for r in attrition] == EXPECTED_HAND_ATTRITION
    assert [r[4] for r in attrition] == [0, 2, 1, 2, 1, 1, 1]

    # The other settings: no sex, age, CMU-C or look-back criterion, CMU-C excluded, no follow-up limit.
    loose = cohort.load_study(write_study(tmp_path, {**HAND_STUDY, "name": "loose", "cmuc": "excluded",
                                                     "sex": [1, 2, 9], "age": {}, "look_back_days": 0,
                                                     "follow_up_days": None}))
    sql = cohort.render_sql(loose, {t: t for t in cohort.TABLES})
    assert [r[3] for r in con.execute(sql["attrition"]).fetchall()] == [13, 11, 11, 11, 1, 1, 1]
    assert _text(con.execute(sql["index_population"]).fetchall()) == [
        ("p07", "2017-02-01", "atc", "A10BA02", 1, 1960, 57, 0, "2016-01-10", "2018-06-30", "study_end", 514)]


def test_trino_sql_parses_and_reads_the_same_rows(tmp_path):
    """The Athena SQL reads one published version of the Glue `<table>_versions` tables; read back into
    DuckDB over such tables (two versions, one a decoy), it gives the rows the DuckDB SQL gives."""
    study = cohort.load_study(write_study(tmp_path, HAND_STUDY))
    trino = cohort.trino_sql(study, "fr-paris", RELEASE, RUN_A)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA snds_fr_paris")
    decoy = hand_model()
    decoy["drug_dispensations"] = decoy["drug_dispensations"][:2]
    for schema, tables in (("version_a", hand_model()), ("version_b", decoy)):
        con.execute(f"CREATE SCHEMA {schema}")
        load_tables(con, tables, schema=schema)
    for table in cohort.TABLES:
        con.execute(f"CREATE VIEW snds_fr_paris.{table}_versions AS " + " UNION ALL ".join(
            f"SELECT *, '{RELEASE}' AS \"release\", '{run_id}' AS run_id FROM {schema}.{table}"
            for schema, run_id in (("version_a", RUN_A), ("version_b", RUN_B))))
    for name, text in trino.items():
        parsed = sqlglot.parse_one(text, read="trino")
        assert {f"{t.db}.{t.name}" for t in parsed.find_all(sqlglot.exp.Table) if t.db} == {
            f"snds_fr_paris.{t}_versions" for t in cohort.TABLES}
        assert f"run_id = '{RUN_A}'" in text and parsed.find(sqlglot.exp.Qualify) is None
        back = sqlglot.transpile(text, read="trino", write="duckdb")[0]
        rows = con.execute(back).fetchall()
        if name == "index_population":
            assert _text(rows) == EXPECTED_HAND
        else:
            assert [r[3] for r in rows] == EXPECTED_HAND_ATTRITION


# --- the pipeline on the synthetic delivery, published ---------------------------------------------------
@pytest.fixture(scope="module")
def model_output(synth_pipeline):
    """(model zone, model step report sections) of the pipeline on the synthetic delivery (DuckDB)."""
    out, reports = synth_pipeline
    return out / "model", reports["model"]


def publish_run(lake: Path, region: str, run_id: str, model_output, keep_patients: int | None = None) -> dict:
    """Lay out a run of RELEASE as the release DAG leaves it before publish (model under its own
    location, model and gate reports), then publish it; `keep_patients` keeps only that many patients."""
    source, sections = model_output
    tag = run_tag(run_id)
    zone = lake / "model" / f"release={RELEASE}" / f"run={tag}"
    shutil.copytree(source, zone)
    tables = json.loads(json.dumps(sections["tables"]))
    if keep_patients is not None:
        part = zone / "patients" / "part-00000.parquet"
        smaller = part.with_name("smaller.parquet")
        duckdb.execute(f"COPY (SELECT * FROM read_parquet('{part}', hive_partitioning = false) ORDER BY patient_id "
                       f"LIMIT {keep_patients}) TO '{smaller}' (FORMAT parquet)")
        smaller.replace(part)
        tables["patients"]["rows"] = keep_patients
    steps = lake / "runs" / f"release={RELEASE}" / tag / "steps"
    steps.mkdir(parents=True)
    report = {"release": RELEASE, "run_id": run_id, "status": "success"}
    (steps / "model.json").write_text(json.dumps({**report, "step": "model", "tables": tables}))
    for gate in ("gate_clean", "gate_model"):
        (steps / f"{gate}.json").write_text(json.dumps({**report, "step": gate, "checks": [],
                                                        "totals": {"checks": 0}}))
    return publish(lake, region=region, release=RELEASE, run_id=run_id, run_dir=steps.parent, model_zone=zone)


def truth_tables(delivery: Path) -> dict[str, list[dict]]:
    """The truth's event tables, patient ids pseudonymised as the lake's are."""
    out = {}
    for table in ("patients", "diagnoses", "drug_dispensations", "procedures", "consults", "biology", "devices",
                  "stays", "cmuc"):
        columns, rows = truth_rows(delivery, table)
        out[table] = [dict(zip(columns, r)) for r in rows]
    return out


def expected_cohort(truth: dict[str, list[dict]], study: dict) -> tuple[list[tuple], list[int]]:
    """(index population rows, patients remaining after each criterion) of a study, computed from the
    truth in plain Python, criterion by criterion (independently of sql/cohort/)."""
    day = dt.timedelta(days=1)
    date = lambda text: D(text) if text else None
    patients = {r["patient_id"]: r for r in truth["patients"]}
    cmuc = {(r["patient_id"], int(r["year"])) for r in truth["cmuc"]}
    first_care = {}
    for table, column in (("consults", "date"), ("drug_dispensations", "date"), ("procedures", "date"),
                          ("biology", "date"), ("devices", "date"), ("stays", "start_date")):
        for r in truth[table]:
            d = date(r[column])
            first_care[r["patient_id"]] = min(d, first_care.get(r["patient_id"], d))

    def events(codes):
        found = []
        for r in truth["diagnoses"] if codes["icd10"] else []:
            if (r["code"].startswith(tuple(codes["icd10"]))
                    and (not codes["diagnosis_sources"] or r["source"] in codes["diagnosis_sources"])
                    and (not codes["diagnosis_types"] or r["diagnosis_type"] in codes["diagnosis_types"])):
                found.append((r["patient_id"], date(r["date"]), "icd10", r["code"]))
        for r in truth["drug_dispensations"] if codes["atc"] else []:
            if r["atc"].startswith(tuple(codes["atc"])):
                found.append((r["patient_id"], date(r["date"]), "atc", r["atc"]))
        for r in truth["procedures"] if codes["ccam"] else []:
            if r["code"].startswith(tuple(codes["ccam"])):
                found.append((r["patient_id"], date(r["date"]), "ccam", r["code"]))
        return found

    start, end = D(study["window_start"]), D(study["window_end"])
    index = {}
    for event in sorted(events(study["inclusion"]), key=lambda e: e[1:]):
        if start <= event[1] <= end:
            index.setdefault(event[0], event)
    age = {p: (e[1].year - int(patients[p]["birth_year"])) if patients[p]["birth_year"] else None
           for p, e in index.items()}
    excluding = {}
    for p, d, *_ in events(study["exclusions"]) if study["has_exclusions"] else []:
        excluding.setdefault(p, []).append(d)
    checks = [
        lambda p: not study["sex"] or int(patients[p]["sex"]) in study["sex"],
        lambda p: (study["age_min"] is None and study["age_max"] is None) or (
            age[p] is not None and study["age_min"] <= age[p] <= study["age_max"]),
        lambda p: study["cmuc"] == "any" or ((p, index[p][1].year) in cmuc) == (study["cmuc"] == "required"),
        lambda p: not study["look_back_days"] or (
            p in first_care and first_care[p] <= index[p][1] - study["look_back_days"] * day),
        lambda p: not any(index[p][1] - study["exclusion_window_days"] * day <= d < index[p][1]
                          for d in excluding.get(p, [])),
    ]
    remaining, kept = [len(patients), len(index)], sorted(index)
    for check in checks:
        kept = [p for p in kept if check(p)]
        remaining.append(len(kept))
    rows = []
    for p in kept:
        r, i = patients[p], index[p][1]
        bounds = [(date(r["death_date"]), "death"), (date(r["last_contact_date"]), "last_contact"),
                  (i + study["follow_up_days"] * day if study["follow_up_days"] else None, "follow_up_days"),
                  (D(study["study_end"]), "study_end")]
        bound = min(b for b, _ in bounds if b)
        reason = next(name for b, name in bounds if b == bound)
        end_date = max(i, bound)
        rows.append((p, i, index[p][2], index[p][3], int(r["sex"]), int(r["birth_year"]) if r["birth_year"] else None,
                     age[p], int((p, i.year) in cmuc), first_care.get(p), end_date, reason, (end_date - i).days))
    return rows, remaining


VARIANT = {  # diagnoses (with their source and type), acts and CMU-C exercised on the synthetic data
    "name": "variant", "description": "women with a musculoskeletal diagnosis or a knee act, no CMU-C",
    "index_window": {"start": "2016-07-01", "end": "2018-06-30"}, "study_end": "2018-12-31",
    "inclusion": {"icd10": ["M", "S8"], "ccam": ["N", "QZ"], "diagnosis_sources": ["MCO", "ALD"],
                  "diagnosis_types": ["DP", "DAS", "ALD"]},
    "sex": [2], "age": {"min": 30, "max": 100}, "cmuc": "excluded", "look_back_days": 120,
    "exclusions": {"atc": ["B01A"], "ccam": ["Z"], "window_days": 90},
}


def read_rows(path: Path) -> list[tuple]:
    return duckdb.execute(f"SELECT * FROM read_parquet('{path}', hive_partitioning = false)").fetchall()


def test_cohort_step_on_the_published_synthetic_model_matches_the_truth(tmp_path, model_output, synth_delivery,
                                                                       capsys):
    lake = tmp_path / "lake"
    publish_run(lake, "fr-paris", RUN_A, model_output)
    variant = write_study(tmp_path, VARIANT)
    assert cohort.main(["--lake", str(lake), "--region", "fr-paris", "--release", RELEASE, "--study", str(EXAMPLE),
                        "--study", str(variant), "--allowed-root", str(tmp_path)]) == 0
    assert "t2d_treated: " in capsys.readouterr().out
    truth = truth_tables(synth_delivery)
    for path in (EXAMPLE, variant):
        study = cohort.load_study(path)
        expected, remaining = expected_cohort(truth, study)
        location = lake / "cohorts" / study["name"] / f"release={RELEASE}" / f"model_run={run_tag(RUN_A)}"
        got = read_rows(location / "index_population.parquet")
        assert got == expected, study["name"]
        attrition = read_rows(location / "attrition.parquet")
        assert [(r[0], r[1], r[3]) for r in attrition] == list(zip(range(7), CRITERIA, remaining))
        assert [r[4] for r in attrition] == [0] + [a - b for a, b in zip(remaining, remaining[1:])]
        report = json.loads((location / "cohort.json").read_text())
        assert report["model_run_id"] == RUN_A and report["release"] == RELEASE and report["study"] == study["name"]
        assert report["study_sha256"] == study["sha256"]
        assert report["manifest"] == str(lake / "published" / f"release={RELEASE}" / "CURRENT.json")
        assert [a["patients"] for a in report["attrition"]] == remaining
        assert report["totals"]["patients"] == len(expected)
        trino = (location / "index_population.trino.sql").read_text()
        assert report["outputs"]["index_population_trino"] == str(location / "index_population.trino.sql")
        assert "snds_fr_paris.patients_versions" in trino and f"run_id = '{RUN_A}'" in trino
        sqlglot.parse_one(trino, read="trino")
        sqlglot.parse_one((location / "attrition.trino.sql").read_text(), read="trino")
    example, _ = expected_cohort(truth, cohort.load_study(EXAMPLE))
    assert 20 <= len(example) <= 100  # a real selection: neither empty nor most of the 300 beneficiaries
    assert expected_cohort(truth, cohort.load_study(variant))[1][-1] >= 5


def test_cohort_versions_follow_the_published_runs(tmp_path, model_output, capsys):
    lake = tmp_path / "lake"
    args = ["--lake", str(lake), "--region", "fr-paris", "--release", RELEASE, "--study", str(EXAMPLE)]
    assert cohort.main(args) == 1
    assert f"release '{RELEASE}' is not published" in capsys.readouterr().err

    publish_run(lake, "fr-paris", RUN_A, model_output)
    assert cohort.main(args) == 0
    base = lake / "cohorts" / "t2d_treated" / f"release={RELEASE}"
    first = base / f"model_run={run_tag(RUN_A)}"
    before = {p.name: p.read_bytes() for p in first.iterdir() if p.suffix in (".parquet", ".sql")}
    # A rebuild for the same model run replaces the version with the same bytes.
    assert cohort.main(args) == 0
    assert {p.name: p.read_bytes() for p in first.iterdir() if p.suffix in (".parquet", ".sql")} == before
    assert sorted(p.name for p in base.iterdir()) == ["latest.json", f"model_run={run_tag(RUN_A)}"]

    publish_run(lake, "fr-paris", RUN_B, model_output, keep_patients=100)
    assert cohort.main(args) == 0
    second = base / f"model_run={run_tag(RUN_B)}"
    assert json.loads((base / "latest.json").read_text())["model_run_id"] == RUN_B
    a, b = read_rows(first / "attrition.parquet"), read_rows(second / "attrition.parquet")
    assert a[0][3] > 100 and b[0][3] == 100 and a[-1][3] > b[-1][3]
    assert cohort.read_cohort(first)["model_run_id"] == RUN_A and cohort.read_cohort(second)["model_run_id"] == RUN_B
    # An older published run can still be (re)built by naming it.
    assert cohort.main([*args, "--model-run-id", RUN_A]) == 0
    assert read_rows(first / "attrition.parquet") == a
    assert cohort.main([*args, "--model-run-id", "never"]) == 1
    assert "run 'never' of release" in capsys.readouterr().err
    assert cohort.main([*args, "--allowed-root", str(tmp_path / "elsewhere")]) == 1


# --- the DAG --------------------------------------------------------------------------------------------
def test_cohort_dag_schedule_tasks_and_run(tmp_path, model_output, capsys):
    from airflow.sdk.exceptions import AirflowFailException

    from snds_operators.cohorts import build_cohort_dag, model_versions
    from snds_operators.factory import model_asset
    from snds_operators.regions import load_regions

    region = load_regions()["local"]
    dag = build_cohort_dag(region)
    assert dag.dag_id == "snds_cohorts__local"
    assert list(dag.timetable.asset_condition.objects) == [model_asset(region)]
    assert dag.task_ids == [p.stem for p in cohort.list_studies()] and "t2d_treated" in dag.task_ids

    # A region whose lake is under tmp_path, with a study that does not validate beside a good one.
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(EXAMPLE, studies)
    write_study(studies, _with({"cmuc": "yes"}), name="bad-study")
    region = load_regions(write_test_region(tmp_path))["local"]
    dag = build_cohort_dag(region, studies)
    assert sorted(dag.task_ids) == ["bad_study", "t2d_treated"]
    with pytest.raises(AirflowFailException, match="bad-study.yaml: cmuc: 'yes' is not one of"):
        dag.get_task("bad_study").python_callable(params={}, triggering_asset_events={})

    build = dag.get_task("t2d_treated").python_callable
    with pytest.raises(AirflowFailException, match="no release"):
        build(params={"release": "", "model_run_id": ""}, triggering_asset_events={})
    with pytest.raises(AirflowFailException, match="is not published"):
        build(params={"release": RELEASE, "model_run_id": ""}, triggering_asset_events={})
    lake = Path(region.lake_root)
    manifest = publish_run(lake, "local", RUN_A, model_output)
    event = SimpleNamespace(extra={"release": RELEASE, "run_id": RUN_A, "manifest": "…", "model": manifest["model"]})
    built = build(params={"release": "", "model_run_id": ""},
                  triggering_asset_events={model_asset(region): [event, event]})
    location = lake / "cohorts" / "t2d_treated" / f"release={RELEASE}" / f"model_run={run_tag(RUN_A)}"
    assert built == [{"release": RELEASE, "model_run_id": RUN_A, "location": str(location),
                      "patients": len(read_rows(location / "index_population.parquet"))}]
    assert "t2d_treated" in capsys.readouterr().out
    assert model_versions({"release": RELEASE, "model_run_id": RUN_A}, []) == [(RELEASE, RUN_A)]
    assert model_versions({"release": RELEASE}, [{"release": "2019-01", "run_id": "x"}]) == [("2019-01", "x")]
