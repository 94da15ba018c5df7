"""Study cohorts: a study's index population and attrition over a release's published model.

A study is a YAML file under config/studies/ (format: config/schemas/study.schema.json and
docs/cohorts.md): inclusion codes (ICD-10, ATC, CCAM prefixes), an index window (the index event is
the patient's first qualifying event in it), sex, age at index, CMU-C, look-back, follow-up,
exclusions and the study end.

    python -m spark_jobs.cohort --lake LAKE --region REGION --release R [--study config/studies/x.yaml ...]
        [--model-run-id ID] [--output-root LAKE/cohorts] [--allowed-root ROOT ...]
    python -m spark_jobs.cohort --check [--study FILE ...]     # validate study files only

For each study, reads the release's published manifest (its CURRENT version, or the version of
`--model-run-id`), registers one DuckDB view per model table over the manifest's Parquet locations,
runs sql/cohort/index_population.sql and sql/cohort/attrition.sql, and writes

    <output root>/<study>/release=R/model_run=<run>/index_population.parquet
                                                    attrition.parquet
                                                    index_population.trino.sql   (the same SQL for Athena,
                                                    attrition.trino.sql           over the Glue tables)
                                                    cohort.json                   (what it was built from)
    <output root>/<study>/release=R/latest.json     (the model run last built)

Versioned by the model: a new published run of the release gives a new `model_run=` directory and
older ones stay; a rebuild for the same model run replaces its directory whole (staged, then switched
in: `steprun.StagedOutputs`; on S3 resolve it with `lakefs.current`). DuckDB only: this is the
"query the published model" side, run where the catalog is (the Airflow worker); in AWS the Trino SQL
runs the same cohort in Athena. Exit code 1 with a message naming the file and field for a bad study
file, or naming the release for a missing publication.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from spark_jobs import lakefs, sqlrender
from spark_jobs.bundle import project_dir
from spark_jobs.lakefs import LakePath

log = logging.getLogger("snds.cohort")

STUDIES_DIR = project_dir() / "config" / "studies"
SCHEMA_PATH = project_dir() / "config" / "schemas" / "study.schema.json"
#: The model tables the cohort SQL reads.
TABLES = ("patients", "diagnoses", "drug_dispensations", "procedures", "consults", "biology", "devices", "stays",
          "cmuc")
#: The outputs of one cohort version, in its directory.
OUTPUTS = ("index_population", "attrition")
VOCABULARIES = ("icd10", "atc", "ccam")
CODE_FIELDS = (*VOCABULARIES, "diagnosis_sources", "diagnosis_types")


class StudyError(ValueError):
    """A study file that cannot be used: the message names the file and the field."""


class CohortError(RuntimeError):
    """A cohort that cannot be built (release not published, model files gone): names the location."""


# --- study files ---------------------------------------------------------------------------------------
def list_studies(directory=None) -> list[Path]:
    """The study files of a directory (default config/studies), sorted; no parsing."""
    return sorted(Path(directory or STUDIES_DIR).glob("*.yaml"))


def _dates_as_text(value):
    """YAML reads unquoted 2017-01-01 as a date: the schema checks text, so dates become ISO text."""
    if isinstance(value, dict):
        return {k: _dates_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _schema_problems(data, schema: dict) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for e in sorted(validator.iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))[:5]:
        key = ".".join(str(p) for p in e.absolute_path)
        if e.validator == "additionalProperties":
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            problems.append(f"{(key + '.') if key else ''}{', '.join(extra)}: unknown field")
        elif e.validator == "required":
            missing = e.message.replace(" is a required property", "").strip("'")
            problems.append(f"{key + '.' if key else ''}{missing}: missing")
        elif e.validator == "anyOf" and key == "inclusion":
            problems.append("inclusion: at least one code prefix is needed (icd10, atc or ccam)")
        elif e.validator == "pattern" and e.absolute_path and e.absolute_path[0] in ("inclusion", "exclusions"):
            problems.append(f"{key}: {e.instance!r} is not a {e.absolute_path[1]} code prefix "
                            "(upper-case letters and digits, no dot)")
        else:
            problems.append(f"{key or '(top level)'}: {e.message}")
    return problems


def _date(path: Path, field: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise StudyError(f"{path.name}: {field}: {text!r} is not a valid date") from None


def load_study(path) -> dict:
    """A study file checked against config/schemas/study.schema.json and normalised into the
    parameters of sql/cohort/ (dates as ISO text, defaults filled in); StudyError names the file and
    the field at fault."""
    import yaml

    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise StudyError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StudyError(f"{path.name}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path.name}: expected a mapping of study fields")
    raw = _dates_as_text(raw)
    problems = _schema_problems(raw, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    if problems:
        raise StudyError(f"{path.name}: " + "; ".join(problems))
    if raw["name"] != path.stem:
        raise StudyError(f"{path.name}: name: {raw['name']!r} must match the file name {path.stem!r}")
    start = _date(path, "index_window.start", raw["index_window"]["start"])
    end = _date(path, "index_window.end", raw["index_window"]["end"])
    study_end = _date(path, "study_end", raw["study_end"])
    if start > end:
        raise StudyError(f"{path.name}: index_window.end: {end} is before index_window.start {start}")
    if end > study_end:
        raise StudyError(f"{path.name}: study_end: {study_end} is before index_window.end {end}")
    age = raw.get("age") or {}
    if age.get("min") is not None and age.get("max") is not None and age["min"] > age["max"]:
        raise StudyError(f"{path.name}: age.max: {age['max']} is below age.min {age['min']}")
    look_back = raw.get("look_back_days", 0)
    exclusions = raw.get("exclusions") or {}
    has_exclusions = any(exclusions.get(v) for v in VOCABULARIES)
    window = exclusions.get("window_days", look_back)
    if exclusions and not has_exclusions:
        raise StudyError(f"{path.name}: exclusions: no code prefix (icd10, atc or ccam) to exclude on")
    if has_exclusions and not window:
        raise StudyError(f"{path.name}: exclusions.window_days: required when look_back_days is 0")
    sex = raw.get("sex")
    return {
        "name": raw["name"],
        "description": raw["description"],
        "file": str(path),
        "sha256": hashlib.sha256(text).hexdigest(),
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "study_end": study_end.isoformat(),
        "inclusion": {f: raw["inclusion"].get(f) or [] for f in CODE_FIELDS},
        # Every sex code listed is the same as none: no criterion.
        "sex": sorted(sex) if sex and set(sex) != {1, 2, 9} else None,
        "age_min": age.get("min"),
        "age_max": age.get("max"),
        "cmuc": raw.get("cmuc", "any"),
        "look_back_days": look_back,
        "follow_up_days": raw.get("follow_up_days"),
        "exclusions": {f: exclusions.get(f) or [] for f in CODE_FIELDS},
        "has_exclusions": has_exclusions,
        "exclusion_window_days": window if has_exclusions else None,
    }


def _codes(codes: dict) -> str:
    parts = [f"{v.upper() if v != 'icd10' else 'ICD-10'} {', '.join(codes[v])}*" for v in VOCABULARIES if codes[v]]
    where = [f"{f.replace('diagnosis_', 'diagnosis ')} {', '.join(codes[f])}" for f in CODE_FIELDS[3:] if codes[f]]
    return " or ".join(parts) + (f" ({'; '.join(where)})" if where else "")


def criteria(study: dict) -> list[dict]:
    """The attrition steps, in order, each with a description of what the study asks."""
    age = ("any age" if study["age_min"] is None and study["age_max"] is None else
           f"{study['age_min'] if study['age_min'] is not None else 0}-"
           f"{study['age_max'] if study['age_max'] is not None else 'any'} years at index (index year - birth year)")
    return [
        {"step": 0, "criterion": "population", "description": "patients of the published model"},
        {"step": 1, "criterion": "qualifying_event",
         "description": f"{_codes(study['inclusion'])} between {study['window_start']} and {study['window_end']}"},
        {"step": 2, "criterion": "sex", "description": "sex " + (", ".join(map(str, study["sex"])) if study["sex"]
                                                                 else "any")},
        {"step": 3, "criterion": "age", "description": age},
        {"step": 4, "criterion": "cmuc", "description": f"CMU-C in the index year: {study['cmuc']}"},
        {"step": 5, "criterion": "look_back",
         "description": (f"first care event at least {study['look_back_days']} days before the index date"
                         if study["look_back_days"] else "no look-back required")},
        {"step": 6, "criterion": "exclusions",
         "description": (f"no {_codes(study['exclusions'])} in the {study['exclusion_window_days']} days before "
                         "the index date" if study["has_exclusions"] else "no exclusion")},
    ]


# --- SQL -----------------------------------------------------------------------------------------------
def render_sql(study: dict, tables: dict[str, str]) -> dict[str, str]:
    """{output: SQL (DuckDB dialect)} of a study over `tables` (model table -> relation)."""
    return {out: sqlrender.render(f"cohort/{out}.sql", study=study, tables=tables, criteria=criteria(study))
            for out in OUTPUTS}


def trino_tables(region: str, release: str, model_run_id: str) -> dict[str, str]:
    """Model table -> the Glue table of one published version (catalog.athena_ddl's `<table>_versions`)."""
    from spark_jobs.catalog import glue_database

    return {t: sqlrender.render("cohort/trino_source.sql", database=glue_database(region), table=t, release=release,
                                run_id=model_run_id) for t in TABLES}


def trino_sql(study: dict, region: str, release: str, model_run_id: str) -> dict[str, str]:
    """{output: SQL for Athena (Trino)} of a study over one published version's Glue tables."""
    import sqlglot

    rendered = render_sql(study, trino_tables(region, release, model_run_id))
    return {out: sqlglot.transpile(sql, read="duckdb", write="trino", pretty=True)[0] for out, sql in rendered.items()}


# --- building ------------------------------------------------------------------------------------------
def published_version(lake_root, release: str, model_run_id: str | None = None) -> tuple[dict, LakePath]:
    """(manifest, its path) of the release's current published version, or of `model_run_id`'s."""
    from spark_jobs.publish import current_path, read_manifest, version_path

    path = version_path(lake_root, release, model_run_id) if model_run_id else current_path(lake_root, release)
    manifest = read_manifest(path)
    if manifest is None:
        what = f"run {model_run_id!r} of release {release!r} was never published" if model_run_id else \
            f"release {release!r} is not published"
        raise CohortError(f"{path}: {what}: a cohort is built from a published model only")
    missing = [t for t in TABLES if t not in manifest["tables"]]
    if missing:
        raise CohortError(f"{path}: the published model has no {', '.join(missing)}")
    return manifest, path


def cohort_dir(output_root, study: str, release: str, model_run_id: str) -> LakePath:
    from spark_jobs.steprun import run_tag

    return LakePath(output_root) / study / f"release={release}" / f"model_run={run_tag(model_run_id)}"


def _connect(manifest: dict, output: LakePath, memory_limit: str | None, threads: int | None, temp_directory: str):
    """A DuckDB connection with one view per model table over the manifest's Parquet locations (and
    the S3 filesystem when they or the `output` are on S3)."""
    import duckdb

    from spark_jobs.steprun import parquet_files

    con = duckdb.connect()
    con.execute(f"SET temp_directory = {sqlrender.sql_string(temp_directory)}")  # spills, as the engine does
    con.execute("SET preserve_insertion_order = true")
    if memory_limit:
        con.execute(f"SET memory_limit = {sqlrender.sql_string(memory_limit)}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if output.is_s3 or any(LakePath(manifest["tables"][t]["location"]).is_s3 for t in TABLES):
        con.register_filesystem(lakefs.duckdb_s3_filesystem())
    for table in TABLES:
        spec = manifest["tables"][table]
        has_files = bool(parquet_files(spec["location"]))
        if not has_files and spec["rows"]:
            raise CohortError(f"{spec['location']}: the files of {table} are gone (published with {spec['rows']} rows)")
        select = sqlrender.render("catalog/version_select.sql", location=spec["location"], columns=spec["columns"],
                                  has_files=has_files)
        con.execute(f"CREATE VIEW {sqlrender.ident(table)} AS {select}")
    return con


def build_cohort(lake_root, *, region: str, release: str, study, model_run_id: str | None = None,
                 output_root=None, memory_limit: str | None = None, threads: int | None = None) -> dict:
    """Build one study's cohort over a published version of the release (the current one unless
    `model_run_id`); returns its report (also written as cohort.json beside the outputs)."""
    from spark_jobs.catalog import glue_database
    from spark_jobs.report import code_version, now_utc
    from spark_jobs.steprun import StagedOutputs

    t0 = time.monotonic()
    study = study if isinstance(study, dict) else load_study(study)
    manifest, manifest_path = published_version(lake_root, release, model_run_id)
    run_id = manifest["run_id"]
    output_root = LakePath(output_root) if output_root else LakePath(lake_root) / "cohorts"
    final = cohort_dir(output_root, study["name"], release, run_id)
    sql = render_sql(study, {t: t for t in TABLES})
    trino = trino_sql(study, region, release, run_id)
    spill = tempfile.TemporaryDirectory(prefix="snds_cohort_")
    con = _connect(manifest, final, memory_limit, threads, spill.name)
    try:
        out = StagedOutputs(final, run_id)
    except BaseException:
        con.close()
        spill.cleanup()
        raise
    try:
        files = {}
        for name in OUTPUTS:
            target = out.stage / f"{name}.parquet"
            con.execute(f"COPY ({sql[name]}) TO {sqlrender.sql_string(str(target))} (FORMAT parquet, COMPRESSION zstd)")
            files[name] = str(final / f"{name}.parquet")
        header = (f"-- Study {study['name']} over release {release}, published run {run_id} (region {region}):\n"
                  f"-- generated by spark_jobs.cohort for Athena (Trino), over the Glue database "
                  f"{glue_database(region)} that catalog/athena.sql creates.\n")
        for name, text in trino.items():
            lakefs.write_bytes(out.stage / f"{name}.trino.sql", (header + text + ";\n").encode("utf-8"))
            files[f"{name}_trino"] = str(final / f"{name}.trino.sql")
        written = sqlrender.sql_string(str(out.stage / "attrition.parquet"))
        attrition = [dict(zip(("step", "criterion", "description", "patients", "removed"), row))
                     for row in con.execute(f"SELECT * FROM read_parquet({written}) ORDER BY step").fetchall()]
        included = attrition[-1]["patients"]
        report = {
            "study": study["name"], "description": study["description"], "study_file": study["file"],
            "study_sha256": study["sha256"], "region": region, "release": release, "model_run_id": run_id,
            "model": manifest["model"], "manifest": str(manifest_path),
            "model_published_at": manifest["published_at"], "code_version": code_version(), "built_at": now_utc(),
            "location": str(final), "outputs": files, "attrition": attrition,
            "totals": {"patients": included, "candidates": attrition[1]["patients"]},
        }
        lakefs.write_json(out.stage / "cohort.json", report)
    except BaseException:
        out.discard()
        raise
    finally:
        con.close()
        spill.cleanup()
    out.commit()
    lakefs.write_json(final.parent / "latest.json", {"model_run_id": run_id, "location": str(final),
                                                     "built_at": report["built_at"]})
    report["seconds"] = round(time.monotonic() - t0, 3)
    log.info("cohort %s, release %s run %s: %d of %d patients (%.1f s) -> %s", study["name"], release, run_id,
             included, attrition[0]["patients"], report["seconds"], final)
    return report


def read_cohort(location) -> dict:
    """cohort.json of a cohort version directory (resolved with `lakefs.current` on S3)."""
    return lakefs.read_json(lakefs.current(location) / "cohort.json")


def main(argv: list[str] | None = None) -> int:
    from spark_jobs.stepargs import setup_logging
    from spark_jobs.uris import SovereigntyError, check_within

    p = argparse.ArgumentParser(prog="spark_jobs.cohort", description="Study cohorts over a release's published model")
    p.add_argument("--lake", help="the region's lake root (local path or s3:// URI)")
    p.add_argument("--region", help="region name (the Glue database of the Trino SQL)")
    p.add_argument("--release", help="published release id, e.g. 2024-06")
    p.add_argument("--study", action="append", default=[], metavar="FILE",
                   help="study file (repeatable; default: every config/studies/*.yaml)")
    p.add_argument("--model-run-id", default=None, help="a published run of the release (default: its current one)")
    p.add_argument("--output-root", default=None, help="where cohorts go (default: LAKE/cohorts)")
    p.add_argument("--allowed-root", action="append", default=[], metavar="ROOT",
                   help="the region's storage: the lake and output root must be under one of them")
    p.add_argument("--duckdb-memory-limit", default=None)
    p.add_argument("--duckdb-threads", type=int, default=None)
    p.add_argument("--check", action="store_true", help="only validate the study files")
    args = p.parse_args(argv)
    setup_logging()
    studies = [Path(s) for s in args.study] or list_studies()
    if not studies:
        print(f"error: no study file in {STUDIES_DIR}", file=sys.stderr)
        return 1
    try:
        loaded = [load_study(s) for s in studies]
        if args.check:
            for s in loaded:
                print(f"{s['file']}: ok ({s['name']})")
            return 0
        missing = [f"--{a}" for a in ("lake", "region", "release") if not getattr(args, a)]
        if missing:
            p.error(f"{', '.join(missing)} required to build cohorts")
        if args.allowed_root:
            check_within(args.lake, args.allowed_root, "--lake")
            if args.output_root:
                check_within(args.output_root, args.allowed_root, "--output-root")
        for study in loaded:
            report = build_cohort(args.lake, region=args.region, release=args.release, study=study,
                                  model_run_id=args.model_run_id, output_root=args.output_root,
                                  memory_limit=args.duckdb_memory_limit, threads=args.duckdb_threads)
            for row in report["attrition"]:
                print(f"  {row['step']} {row['criterion']:<17} {row['patients']:>10,}  (-{row['removed']:,})  "
                      f"{row['description']}")
            print(f"{study['name']}: {report['totals']['patients']:,} patients -> {report['location']}")
    except (StudyError, CohortError, SovereigntyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
