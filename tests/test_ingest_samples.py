"""Ingest of the HDH 10-row sample files, checked line by line against an independent Python validator.

The samples are comma-separated with ISO dates and SAS datetimes, and their values are random: some
boolean flags hold 2 or 3, so a few lines must be quarantined, and exactly those.
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
    if kind == "string" or v == "":
        return True
    if kind == "integer":
        return re.fullmatch(r"[+-]?\d{1,18}", v) is not None
    if kind == "number":
        if re.search(r"[^0-9eE+.-]", v):
            return False
        try:
            return math.isfinite(float(v))
        except ValueError:
            return False
    if kind == "boolean":
        return v.lower() in {"0", "1", "true", "false"}
    if kind == "year":
        return re.fullmatch(r"\d{4}(\d{2})?", v) is not None
    if kind == "yearmonth":
        return re.fullmatch(r"\d{6}", v) is not None and 1 <= int(v[4:]) <= 12
    if kind == "month":
        return re.fullmatch(r"\d{1,2}", v) is not None and 1 <= int(v) <= 12
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
            if not _valid(col.kind, col.formats, text):
                reason = f"bad_{col.kind}:{col.name}"
                break
        reasons.append(reason)
    return reasons


def test_samples_parse_as_the_reference_validator_says(tmp_path, sample_config):
    cfg = IngestConfig.load(sample_config)
    result = ingest_delivery("duckdb", SAMPLES, tmp_path, config=sample_config)
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
    # The DCIR samples are clean: every line typed, dates as dates.
    prs = con.execute(f"SELECT EXE_SOI_DTD, BEN_NAI_ANN FROM '{tmp_path}/ingest/ER_PRS_F/*.parquet'").fetchall()
    assert len(prs) == 10 and all(isinstance(d, dt.date) for d, _ in prs)
    mco = con.execute(f"SELECT EXE_SOI_DTD FROM '{tmp_path}/ingest/T_MCOaaC/year=2019/*.parquet'").fetchall()
    assert all(isinstance(d, dt.date) for (d,) in mco)
