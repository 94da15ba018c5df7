"""Ingest of the HDH 10-row sample files, checked line by line against an independent Python validator.

The samples are comma-separated with ISO dates and SAS datetimes (profile hdh_sample), and their values
are random: some boolean flags hold 2 or 3. A line is quarantined only when a rule column (a key or a
field a cleaning rule needs) does not parse; every other unreadable cell is NULL and counted.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re

import duckdb

from conftest import SAMPLES
from helpers import ingest_delivery
from spark_jobs.delivery import IngestConfig

_STRPTIME = {
    "dd/MM/yyyy": ("%d/%m/%Y", 10),
    "yyyy-MM-dd": ("%Y-%m-%d", 10),
    "ddMMyyyy": ("%d%m%Y", 8),
    "ddMMMyyyy:HH:mm:ss": ("%d%b%Y:%H:%M:%S", 18),
}


def _valid(kind: str, formats: tuple, text: str) -> bool:
    v = text.strip()
    if kind in ("string", "code") or v == "":
        return True
    if kind == "integer":
        return re.fullmatch(r"[+-]?\d{1,18}(\.0*)?", v) is not None
    if kind == "number":
        if re.search(r"[^0-9eE+.-]", v):
            return False
        try:
            return math.isfinite(float(v))
        except ValueError:
            return False
    if kind == "boolean":
        return v.lower() in {"0", "1", "true", "false", "0.0", "1.0"}
    if kind == "year":
        return re.fullmatch(r"\d{4}(\d{2})?(\.0*)?", v) is not None
    if kind == "yearmonth":
        return re.fullmatch(r"\d{6}", v) is not None and (
            1 <= int(v[4:]) <= 12 or (1 <= int(v[:2]) <= 12 and 1600 <= int(v[2:]) <= 2099))
    if kind == "month":
        return re.fullmatch(r"\d{1,2}(\.0*)?", v) is not None and 1 <= int(v.split(".")[0]) <= 12
    if kind == "date":
        for fmt in formats:
            pattern, width = _STRPTIME[fmt]
            if len(v) == width:
                try:
                    dt.datetime.strptime(v, pattern)
                    return True
                except ValueError:
                    pass
        return False
    raise AssertionError(kind)


def _expected_reasons(cfg: IngestConfig, path) -> list[str | None]:
    f = cfg.describe(path)
    by_pos = {c.position: c for c in f.columns}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter=",", quoting=csv.QUOTE_NONE))
    reasons = []
    for row in rows[1:]:
        if len(row) != len(rows[0]):
            reasons.append("wrong_column_count")
            continue
        reason = None
        for pos, text in enumerate(row, start=1):
            col = by_pos[pos]
            # Only a rule column's bad value refuses the row; any other becomes a NULL cell.
            if col.strict and not _valid(col.kind, col.formats, text):
                reason = f"bad_{col.kind}:{col.name}"
                break
        reasons.append(reason)
    return reasons


def _expected_nulled(cfg: IngestConfig, path, reasons) -> int:
    f = cfg.describe(path)
    by_pos = {c.position: c for c in f.columns}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter=",", quoting=csv.QUOTE_NONE))
    return sum(1 for row, reason in zip(rows[1:], reasons) if reason is None
               for pos, text in enumerate(row, start=1)
               if not by_pos[pos].strict and not _valid(by_pos[pos].kind, by_pos[pos].formats, text))


def test_samples_parse_as_the_reference_validator_says(tmp_path, sample_profile):
    cfg = IngestConfig.load(profile=sample_profile)
    result = ingest_delivery("duckdb", SAMPLES, tmp_path, profile=sample_profile)
    con = duckdb.connect()
    assert result["totals"]["rows_read"] == 10 * len(list(SAMPLES.glob("*.csv")))
    for f in cfg.scan(SAMPLES):
        expected = _expected_reasons(cfg, f.path)
        expected_bad = sorted(r for r in expected if r)
        got = result["tables"][f.table]["files"][0]
        assert got["rows_read"] == len(expected)
        assert got["rows"] == expected.count(None), f.path.name
        reasons = []
        qdir = tmp_path / "quarantine" / f.partition
        if qdir.exists():
            reasons = sorted(r for (r,) in con.execute(f"SELECT reason FROM '{qdir}/*.parquet'").fetchall())
        assert reasons == expected_bad, f.path.name
        assert sum(c["cells"] for c in got["nulled_cells"]) == _expected_nulled(cfg, f.path, expected), f.path.name
    # The DCIR samples are clean: every line typed, dates as dates.
    prs = con.execute(f"SELECT EXE_SOI_DTD, BEN_NAI_ANN FROM '{tmp_path}/ingest/ER_PRS_F/*.parquet'").fetchall()
    assert len(prs) == 10 and all(isinstance(d, dt.date) for d, _ in prs)
    mco = con.execute(f"SELECT EXE_SOI_DTD FROM '{tmp_path}/ingest/T_MCOaaC/year=2019/*.parquet'").fetchall()
    assert all(isinstance(d, dt.date) for (d,) in mco)


ALL_SAMPLES = SAMPLES.parent / "snds_samples_all"


def test_every_hdh_sample_table_is_one_delivery_that_runs_to_the_model(tmp_path, sample_profile):
    """The 191 sample files of the HDH's synthetic-snds (every catalogued table, and three OPEN_* files
    of no SNDS schema) as one delivery: nothing refuses the run, every row is accounted for, the
    uncatalogued files are ingested as text, and clean, merge and model run on what is there."""
    from helpers import run_steps_after_ingest

    files = sorted(ALL_SAMPLES.glob("*.csv"))
    assert len(files) == 191
    report = ingest_delivery("duckdb", ALL_SAMPLES, tmp_path, profile=sample_profile)
    totals = report["totals"]
    assert totals["rows_read"] == 10 * len(files)
    assert totals["rows_read"] == totals["rows_written"] + totals["quarantined"] + totals["dropped_by_rule"]
    assert [t for _, t in report["delivery"]["uncatalogued"]] == ["OPEN_BIO", "OPEN_LPP", "OPEN_MEDIC"]
    assert [n for n, t in sorted(report["tables"].items()) if not t["catalogued"]] == ["OPEN_BIO", "OPEN_LPP", "OPEN_MEDIC"]
    assert len(report["tables"]) == len(files)
    steps = run_steps_after_ingest("duckdb", tmp_path / "ingest", tmp_path)
    assert steps["model"]["tables"]["patients"]["rows"] > 0
