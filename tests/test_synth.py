"""Tests of the synthetic SNDS delivery generator (snds_synth).

The delivery is read back like an ingest would (split on `;`, typed by the table schemas), the planted
anomalies are counted independently and compared with the truth manifest, and a small reference
implementation of the event definitions of docs/synthetic-data.md (DuckDB over the parsed files) must
reproduce the truth event tables exactly. Delivery variants (snds_synth.variants) are read back through
their profile, their values given back the native layout, and must give their truth by the same model.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from snds_synth import GeneratorError, generate
from snds_synth import schemas

ROOT = Path(__file__).resolve().parent.parent
N, SEED, YEARS = 300, 7, (2019, 2021)
ID17 = re.compile(r"^[0-9A-Z]{17}$")
PLACEHOLDERS = {"xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXD"}
CONSULT_NATURES = (1098, 1110, 1111, 1112, 1113, 1114, 1115, 1191, 1192)
# Cost category of the prestation natures (snds_synth/reference/prs_nat.csv); any other nature: other
COST_CATEGORY = {**{k: "consult" for k in CONSULT_NATURES}, **{k: "procedure" for k in (1321, 1322, 1324, 1351, 1352)},
                 **{k: "drug" for k in (3311, 3313, 3317, 3341)}, 3211: "biology",
                 **{k: "device" for k in (3512, 3514, 3515, 3521)}, **{k: "transport" for k in (4212, 4213, 4214)}}
MONTHS = {m: i + 1 for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "out"
    manifest = generate(out, n=N, seed=SEED, years=YEARS, quiet=True)
    return out, manifest


@pytest.fixture(scope="module")
def gen_old(tmp_path_factory):
    """Years up to 2017 (geographic duplicates), ISO dates, latin-1, NUM_ENQ."""
    out = tmp_path_factory.mktemp("synth_old") / "out"
    manifest = generate(out, n=250, seed=3, years=(2016, 2018), dcir_dates="iso", encoding="latin-1",
                        id_column="NUM_ENQ", quiet=True)
    return out, manifest


class _Frames(dict):
    """Frames per file; a file the delivery does not hold (an absent source) reads as an empty table."""

    def __missing__(self, fname: str) -> pd.DataFrame:
        return _empty(fname[: -len(".csv")])


def _empty(table: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype="string") for c in schemas.order(table)})


B_RETURN_CODES = {"T_MCOaaB": ("GRC_RET", "GRG_RET"), "T_SSRaaB": ("GRC_RET", "GRG_RET"), "T_HADaaB": ("ETA_GRP_RET",)}


def native_value(table: str, column: str, variants: set):
    """For a variant delivery: the function giving back the native text of a value (what the generator
    writes without variants), or None when the column is written natively. Invalid values stay invalid."""
    k = schemas.kind(table, column)
    if "float_ints" in variants and k == "integer":
        return lambda v: v[:-2] if re.fullmatch(r"-?[0-9]+\.0", v) else v
    if "decimal_comma" in variants and k == "number":
        return lambda v: v.replace(",", ".")
    if "sas_datetimes" in variants and schemas.is_pmsi(table) and column in ("EXE_SOI_DTD", "EXE_SOI_DTF") \
            and k == "date:default":
        def sas_to_iso(v):
            mm = re.fullmatch(r"([0-9]{2})([A-Z]{3})([0-9]{4}):00:00:00", v)
            return f"{mm.group(3)}-{MONTHS[mm.group(2)]:02d}-{mm.group(1)}" if mm and mm.group(2) in MONTHS else v
        return sas_to_iso
    if "return_codes3" in variants and column in B_RETURN_CODES.get(table, ()):
        return lambda v: {"000": "0", "111": "1"}.get(v, v)
    if "return_codes3" in variants and (table, column) == ("T_SSRaaB", "MOI_ANN"):
        return lambda v: v[2:] + v[:2] if re.fullmatch(r"[0-9]{6}", v) else v
    return None


class Delivery:
    """A delivery read back: per file, the valid rows (typed as text) and the faults found. A variant
    delivery (manifest `variants`) is read as its profile says (encoding, line ends, byte-order mark) and
    its values are given back their native layout (native_value), so that the checks below apply; a
    chaining table without some chaining codes reads them as '0' (the rule judges the codes present)."""

    def __init__(self, out: Path, manifest: dict):
        self.out, self.m = out, manifest
        self.variants = set(manifest.get("variants", []))
        self.enc = {"latin-1": "latin-1", "cp1252": "cp1252"}.get(manifest["encoding"], "utf-8")
        self.eol = "\r\n" if self.variants & {"crlf", "crlf_bom"} else "\n"
        self.frames: dict[str, pd.DataFrame] = _Frames()
        self.faults: dict[str, dict[str, int]] = {}
        self.nulled: dict[str, dict[str, int]] = {}
        self.lines: dict[str, int] = {}
        for fname, entry in manifest["files"].items():
            if entry["table"] is not None:
                self._read(fname, entry["table"])

    def _read(self, fname: str, table: str):
        raw = (self.out / fname).read_bytes()
        bom = raw.startswith(b"\xef\xbb\xbf")
        assert bom == (self.enc == "utf-8" and bool(self.variants & {"bom", "crlf_bom"})), fname
        text = raw[3 if bom else 0:].decode(self.enc)
        assert '"' not in text, fname
        assert text.endswith(self.eol), fname
        rows = text.split(self.eol)[:-1]
        assert not any("\r" in r or "\n" in r for r in rows), f"{fname}: stray line break"
        header = rows[0].split(";")
        names = ["BEN_NIR_PSA" if (h == "NUM_ENQ" and "BEN_NIR_PSA" in schemas.fields(table)) else
                 "NIR_ANO_17" if h == "NUM_ENQ" else h for h in header]
        assert names == [c for c in schemas.order(table) if c in names], f"{fname}: columns not in schema order"
        assert ("num_enq" in self.variants) == ("NUM_ENQ" in header) or not (set(names) & {"BEN_NIR_PSA", "NIR_ANO_17"}), fname
        conv = [native_value(table, c, self.variants) for c in names]
        faults: dict[str, int] = {}
        # columns the manifest says hold unreadable values that ingest nulls (the row is kept)
        nullable = {k.split("|")[0] for k in self.m["files"][fname].get("nulled", {})}
        nulled: dict[str, int] = {}
        good = []
        for line in rows[1:]:
            f = line.split(";")
            if len(f) != len(names):
                faults["wrong_column_count"] = faults.get("wrong_column_count", 0) + 1
                continue
            f = [cv(v) if (cv and v) else v for cv, v in zip(conv, f)]
            bad = None
            for i, (name, v) in enumerate(zip(names, f)):
                if v != "" and not valid(table, name, v, self.m):
                    if name in nullable:
                        key = f"{name}|bad_{schemas.reason_kind(table, name)}"
                        nulled[key] = nulled.get(key, 0) + 1
                        f[i] = ""
                        continue
                    bad = f"bad_{schemas.reason_kind(table, name)}:{name}"
                    break
            if bad:
                faults[bad] = faults.get(bad, 0) + 1
                continue
            good.append(f)
        self.lines[fname] = len(rows) - 1
        self.faults[fname] = faults
        self.nulled[fname] = nulled
        df = pd.DataFrame(good, columns=names, dtype=object).replace("", None)
        if table.endswith("aaC") and "chaining_missing_codes" in self.variants:
            for c in CHAINING["PMSI"]:
                if c not in df.columns:
                    df[c] = "0"
        self.frames[fname] = df

    def table(self, table: str) -> pd.DataFrame:
        """All valid rows of a table (PMSI: every year, with a `_year` column)."""
        parts = []
        for fname, e in self.m["files"].items():
            if e["table"] == table:
                df = self.frames[fname].copy()
                df["_year"] = e["year"]
                parts.append(df)
        if not parts:
            df = _empty(table)
            df["_year"] = pd.Series([], dtype="Int64")
            return df
        return pd.concat(parts, ignore_index=True)


def _date_ok(y, m, d) -> bool:
    try:
        dt.date(int(y), int(m), int(d))
        return True
    except ValueError:
        return False


def valid(table: str, column: str, v: str, manifest: dict) -> bool:
    """Does text `v` parse as the column's schema type, in the layout the generator must write?"""
    k = schemas.kind(table, column)
    if k == "string":
        return True
    if k == "integer":
        if column == "GHS_NUM" and "return_codes3" in manifest.get("variants", []) and re.fullmatch(r"[A-Z][0-9]{2}", v):
            return True  # GHS numbers holding letters (return_codes3)
        return re.fullmatch(r"-?[0-9]+", v) is not None
    if k == "number":
        return re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", v) is not None
    if k == "boolean":
        return v in ("0", "1")
    if k == "year":
        return re.fullmatch(r"[0-9]{4}", v) is not None
    if k == "yearmonth":
        return re.fullmatch(r"[0-9]{4}(0[1-9]|1[0-2])", v) is not None
    if k == "month":
        return re.fullmatch(r"0[1-9]|1[0-2]", v) is not None
    if k == "date:dmy8":
        return re.fullmatch(r"[0-9]{8}", v) is not None and _date_ok(v[4:], v[2:4], v[:2])
    if k == "date:sas":
        mm = re.fullmatch(r"([0-9]{2})([A-Z]{3})([0-9]{4}):00:00:00", v)
        return mm is not None and mm.group(2) in MONTHS and _date_ok(mm.group(3), MONTHS[mm.group(2)], mm.group(1))
    if k == "date:default":
        if schemas.is_pmsi(table) or manifest["dcir_dates"] == "iso":
            mm = re.fullmatch(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", v)
            return mm is not None and _date_ok(mm.group(1), mm.group(2), mm.group(3))
        mm = re.fullmatch(r"([0-9]{2})/([0-9]{2})/([0-9]{4})", v)
        return mm is not None and _date_ok(mm.group(3), mm.group(2), mm.group(1))
    raise AssertionError(k)


@pytest.fixture(scope="module")
def delivery(gen):
    return Delivery(*gen)


@pytest.fixture(scope="module")
def delivery_old(gen_old):
    return Delivery(*gen_old)


def truth(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "_truth" / "events" / f"{name}.csv", dtype=str, keep_default_na=False)


# --------------------------------------------------------------------------------------------- basics
def test_deterministic(gen, tmp_path):
    out, _ = gen
    again = tmp_path / "again"
    generate(again, n=N, seed=SEED, years=YEARS, quiet=True)
    a = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    b = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert a == b
    for rel in a:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_files_and_row_counts(gen, delivery):
    out, m = gen
    on_disk = {p.name for p in out.iterdir() if p.is_file()} - {"SHA256SUMS"}  # written last: tests/test_landing.py
    assert on_disk == set(m["files"])
    expected = {f"{t}.csv" for t in ("ER_PRS_F", "ER_PHA_F", "ER_CAM_F", "ER_BIO_F", "ER_ETE_F", "ER_UCD_F", "ER_TIP_F",
                                     "IR_BEN_R", "IR_IMB_R", "IR_PHA_R", "REF_ATC_DDD", "KI_CCI_R", "KI_ECD_R")}
    for y in range(YEARS[0], YEARS[1] + 1):
        yy = f"{y % 100:02d}"
        expected |= {f"T_MCO{yy}{s}.csv" for s in ("B", "C", "D", "A", "UM", "MED", "DMIP", "VALO", "CSTC", "FBSTC", "VALOACE")}
        expected |= {f"T_SSR{yy}{s}.csv" for s in ("B", "C", "D", "CCAM", "STC")}
        expected |= {f"T_HAD{yy}{s}.csv" for s in ("B", "C", "D", "STC")}
        expected |= {f"T_RIP{yy}{s}.csv" for s in ("C", "RSA", "STC")}
    assert on_disk == expected
    for fname, e in m["files"].items():
        assert delivery.lines[fname] == e["rows"], fname
    for name, k in m["events"].items():
        assert len(truth(out, name)) == k, name
    assert set(m["cleaning"]) == {
        "dcir_for_information", "dcir_for_information_strict", "dcir_bse_prs_nat_0", "dcir_ete_ind_taa_1",
        "dcir_regularisation", "pmsi_bad_chaining", "pmsi_placeholder_nir", "pmsi_geographic_finess_duplicate",
        "mco_error_ghm", "ssr_error_gme", "had_error_ghpc", "mco_ghs_9999"}
    assert m["geographic_finess"] and all(re.fullmatch(r"[0-9]{9}", f) for f in m["geographic_finess"])


def test_required_columns(delivery):
    prs = set(delivery.frames["ER_PRS_F.csv"].columns)
    keys = {"FLX_DIS_DTD", "FLX_TRT_DTD", "FLX_EMT_TYP", "FLX_EMT_NUM", "FLX_EMT_ORD", "ORG_CLE_NUM", "DCT_ORD_NUM",
            "PRS_ORD_NUM", "REM_TYP_AFF"}
    assert keys | {"BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_SEX_COD", "BEN_NAI_ANN", "BEN_AMA_COD", "BEN_CDI_NIR", "BEN_CMU_TOP",
                   "BEN_DCD_DTE", "BEN_DCD_AME", "EXE_SOI_DTD", "EXE_SOI_DTF", "PRS_NAT_REF", "PRS_ACT_QTE", "PRS_PAI_MNT",
                   "BSE_REM_BSE", "BSE_REM_MNT", "CPL_REM_MNT", "BSE_PRS_NAT", "DPN_QLF", "PRS_DPN_QLP", "CPL_MAJ_TOP",
                   "CPL_AFF_COD", "PSE_SPE_COD", "PSE_ACT_NAT", "ETB_PRE_FIN"} <= prs
    for t in ("ER_PHA_F", "ER_CAM_F", "ER_BIO_F", "ER_ETE_F", "ER_UCD_F", "ER_TIP_F"):
        assert keys <= set(delivery.frames[f"{t}.csv"].columns), t
    assert {"PHA_CIP_C13", "PHA_PRS_IDE", "PHA_ATC_C07", "PHA_ATC_L07", "PHA_MED_NOM", "PHA_UPC_NBR", "PHA_SUB_DOS",
            "PHA_DOS_UNI"} <= set(delivery.frames["IR_PHA_R.csv"].columns)


def test_malformed_rows_where_truth_says(gen, delivery):
    """Every fault found by re-parsing is planted, and every planted fault is found (per file and reason)."""
    _, m = gen
    for fname, e in m["files"].items():
        assert delivery.faults[fname] == e["quarantine"], fname
        assert delivery.nulled[fname] == e.get("nulled", {}), fname
    # unreadable stay dates are planted (nulled at ingest, the stay kept with its fallback date), and
    # only in columns that are not rule columns of the ingest config
    nulled = {f: e["nulled"] for f, e in m["files"].items() if e.get("nulled")}
    assert nulled and all(f.startswith("T_MCO") and f.endswith("C.csv") for f in nulled), nulled
    rule_cols = yaml.safe_load((ROOT / "config" / "ingest.yaml").read_text())["rule_columns"]
    assert not any(fnmatch.fnmatch("T_MCOaaC", k) for k in rule_cols)
    q = {f: e["quarantine"] for f, e in m["files"].items()}
    assert q["ER_PRS_F.csv"].get("wrong_column_count") and q["ER_PRS_F.csv"].get("bad_date:EXE_SOI_DTD")
    assert q["ER_PRS_F.csv"].get("bad_number:PRS_PAI_MNT") and q["ER_PHA_F.csv"].get("bad_integer:PHA_ACT_QSN")
    assert q["ER_PHA_F.csv"].get("wrong_column_count")
    for y in range(YEARS[0], YEARS[1] + 1):
        yy = f"{y % 100:02d}"
        assert q[f"T_MCO{yy}B.csv"].get("wrong_column_count")
        assert set(q[f"T_MCO{yy}C.csv"]) == {"wrong_column_count"}
        assert set(m["files"][f"T_MCO{yy}C.csv"]["nulled"]) == {"EXE_SOI_DTD|bad_date", "EXE_SOI_DTF|bad_date",
                                                                "ENT_DAT|bad_date"}
    assert sum(q[f].get("wrong_column_count", 0) for f in q if f.startswith("T_SSR") and f.endswith("C.csv")) > 0


def test_value_formats(delivery):
    """Spot checks of the layouts (the full per-column check is the re-parse above)."""
    prs = delivery.frames["ER_PRS_F.csv"]
    assert prs["EXE_SOI_DTD"].str.fullmatch(r"\d{2}/\d{2}/\d{4}").all()
    assert prs["BEN_DCD_AME"].str.fullmatch(r"\d{6}").all()
    assert (prs.loc[prs["BEN_DCD_AME"] == "160001", "BEN_DCD_DTE"] == "01/01/1600").all()
    assert prs["BEN_NIR_PSA"].str.fullmatch(ID17.pattern).all() and (prs["BEN_RNG_GEM"] == "1").all()
    assert prs["PRS_PAI_MNT"].str.fullmatch(r"-?\d+\.\d{2}").all()
    c = delivery.table("T_MCOaaC")
    assert c["EXE_SOI_DTD"].str.fullmatch(r"\d{2}[A-Z]{3}\d{4}:00:00:00").all()
    assert c["ENT_DAT"].str.fullmatch(r"\d{8}").all() and c["SOR_MOI"].str.fullmatch(r"0[1-9]|1[0-2]").all()
    assert delivery.table("T_SSRaaC")["EXE_SOI_DTD"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    rip = delivery.table("T_RIPaaC")
    assert rip["EXE_SOI_DTF"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all() and rip["ENT_DAT"].str.fullmatch(r"\d{8}").all()
    assert rip["RIP_NUM"].str.fullmatch(r"\d{7}").all()
    cs = delivery.table("T_MCOaaCSTC")
    assert cs["EXE_SOI_DTD"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all() and cs["ENT_DAT"].str.fullmatch(r"\d{8}").all()
    assert list(delivery.frames["T_MCO19VALOACE.csv"].columns) == ["ETA_NUM", "mnt_br", "mnt_remb", "SEQ_NUM", "valo"]
    b = delivery.table("T_MCOaaB")
    assert b["ETA_NUM"].str.fullmatch(r"[0-9A-Z]{9}").all() and b["RSA_NUM"].str.fullmatch(r"\d{10}").all()
    ben = delivery.frames["IR_BEN_R.csv"]
    for col in ("BEN_NIR_PSA", "BEN_NIR_ANO", "BEN_IDT_ANO"):
        assert ben[col].str.fullmatch(ID17.pattern).all() and ben[col].is_unique
    dotted = sum(delivery.table(t)[c].dropna().str.contains(".", regex=False).sum()
                 for t, c in (("T_MCOaaB", "DGN_PAL"), ("T_MCOaaB", "DGN_REL"), ("T_MCOaaD", "ASS_DGN")))
    assert dotted > 0


# --------------------------------------------------------------------------------------------- joins
def test_joins(gen, delivery):
    _, m = gen
    con = duckdb.connect()
    prs = delivery.frames["ER_PRS_F.csv"]
    con.register("prs", prs)
    keys = ["FLX_DIS_DTD", "FLX_TRT_DTD", "FLX_EMT_TYP", "FLX_EMT_NUM", "FLX_EMT_ORD", "ORG_CLE_NUM", "DCT_ORD_NUM",
            "PRS_ORD_NUM", "REM_TYP_AFF"]
    assert not prs.duplicated(keys).any()
    on = " AND ".join(f"d.{k} = p.{k}" for k in keys)
    for t in ("ER_PHA_F", "ER_CAM_F", "ER_BIO_F", "ER_ETE_F", "ER_UCD_F", "ER_TIP_F"):
        con.register("d", delivery.frames[f"{t}.csv"])
        orphans = con.sql(f"SELECT count(*) FROM d WHERE NOT EXISTS (SELECT 1 FROM prs p WHERE {on})").fetchall()[0][0]
        assert orphans == 0, t
        con.unregister("d")
    ben = set(delivery.frames["IR_BEN_R.csv"]["BEN_NIR_PSA"])
    assert set(prs["BEN_NIR_PSA"]) <= ben
    assert set(delivery.frames["IR_IMB_R.csv"]["BEN_NIR_PSA"]) <= ben
    idt = set(delivery.frames["IR_BEN_R.csv"]["BEN_IDT_ANO"])
    assert set(delivery.frames["KI_CCI_R.csv"]["BEN_IDT_ANO"]) <= idt
    assert set(delivery.frames["KI_ECD_R.csv"]["DCD_IDT_ENC"]) == set(delivery.frames["KI_CCI_R.csv"]["DCD_IDT_ENC"])
    assert set(delivery.frames["ER_PHA_F.csv"]["PHA_PRS_C13"]) <= set(delivery.frames["IR_PHA_R.csv"]["PHA_CIP_C13"])
    for src, key in (("MCO", ["ETA_NUM", "RSA_NUM"]), ("SSR", ["ETA_NUM", "RHA_NUM"]), ("HAD", ["ETA_NUM_EPMSI", "RHAD_NUM"])):
        for y in range(YEARS[0], YEARS[1] + 1):
            yy = f"{y % 100:02d}"
            b = delivery.frames[f"T_{src}{yy}B.csv"]
            c = delivery.frames[f"T_{src}{yy}C.csv"]
            bk = set(map(tuple, b[key].values))
            ck = set(map(tuple, c[key].values))
            assert len(ck) == len(c)  # one C row per stay
            qb = m["files"][f"T_{src}{yy}B.csv"]["quarantine"]
            qc = m["files"][f"T_{src}{yy}C.csv"]["quarantine"]
            # a stay whose B (resp. C) line is quarantined keeps only its C (resp. B) row
            assert len(ck - bk) == sum(qb.values()) and len(bk - ck) == sum(qc.values())
            subs = {"MCO": ("D", "A", "UM", "MED", "DMIP", "VALO"), "SSR": ("D", "CCAM", "STC"), "HAD": ("D", "STC")}[src]
            for sfx in subs:
                s = delivery.frames[f"T_{src}{yy}{sfx}.csv"]
                assert set(map(tuple, s[key].values)) <= (bk & ck), (src, y, sfx)
            if src == "SSR":
                wk = set(map(tuple, b[key + ["RHS_NUM"]].values))
                for sfx in ("D", "CCAM"):
                    s = delivery.frames[f"T_{src}{yy}{sfx}.csv"]
                    assert set(map(tuple, s[key + ["RHS_NUM"]].values)) <= wk
            nir = set(c["NIR_ANO_17"])
            assert nir <= ben | PLACEHOLDERS


# --------------------------------------------------------------------------------------------- cleaning
def _kept_dcir(con) -> None:
    """Views `cl` (ER_PRS_F lines after the filters, with the G key) and `grp` (régularisation groups)."""
    con.sql("""
        CREATE OR REPLACE VIEW flagged AS
        SELECT p.*,
               CASE WHEN DPN_QLF = '71' THEN 'dcir_for_information'
                    WHEN PRS_DPN_QLP = '71' THEN 'dcir_for_information_strict'
                    WHEN BSE_PRS_NAT = '0' THEN 'dcir_bse_prs_nat_0'
                    WHEN EXISTS (SELECT 1 FROM ete e WHERE e.ETE_IND_TAA = '1' AND e.DCT_ORD_NUM = p.DCT_ORD_NUM
                                 AND e.FLX_DIS_DTD = p.FLX_DIS_DTD AND e.FLX_TRT_DTD = p.FLX_TRT_DTD
                                 AND e.FLX_EMT_TYP = p.FLX_EMT_TYP AND e.FLX_EMT_NUM = p.FLX_EMT_NUM
                                 AND e.FLX_EMT_ORD = p.FLX_EMT_ORD AND e.ORG_CLE_NUM = p.ORG_CLE_NUM
                                 AND e.PRS_ORD_NUM = p.PRS_ORD_NUM AND e.REM_TYP_AFF = p.REM_TYP_AFF)
                         THEN 'dcir_ete_ind_taa_1' END AS _rule
        FROM prs p""")
    con.sql("""
        CREATE OR REPLACE VIEW cl AS
        SELECT *, hash(BEN_NIR_PSA, BEN_RNG_GEM, EXE_SOI_DTD, EXE_SOI_DTF, PRS_NAT_REF, coalesce(PFS_EXE_NUM, ''),
                       coalesce(ETB_PRE_FIN, ''), CPL_MAJ_TOP, CPL_AFF_COD) AS g
        FROM flagged WHERE _rule IS NULL""")
    con.sql("""
        CREATE OR REPLACE VIEW grp AS
        SELECT g, count(*) AS n, sum(CAST(PRS_ACT_QTE AS DOUBLE)) AS qty FROM cl GROUP BY g""")


def test_cleaning_counts_dcir(gen, delivery):
    _, m = gen
    con = duckdb.connect()
    con.register("prs", delivery.frames["ER_PRS_F.csv"])
    con.register("ete", delivery.frames["ER_ETE_F.csv"])
    _kept_dcir(con)
    got = dict(con.sql("SELECT _rule, count(*) FROM flagged WHERE _rule IS NOT NULL GROUP BY _rule").fetchall())
    # a stricter check: the filters are disjoint
    prs = delivery.frames["ER_PRS_F.csv"]
    assert (prs["DPN_QLF"] == "71").sum() == m["cleaning"]["dcir_for_information"]["ER_PRS_F"]
    assert ((prs["PRS_DPN_QLP"] == "71") & (prs["DPN_QLF"] != "71")).sum() == m["cleaning"]["dcir_for_information_strict"]["ER_PRS_F"]
    assert (prs["BSE_PRS_NAT"] == "0").sum() == m["cleaning"]["dcir_bse_prs_nat_0"]["ER_PRS_F"]
    removed = con.sql("SELECT sum(CASE WHEN qty <= 0 THEN n ELSE n - 1 END) FROM grp").fetchall()[0][0]
    got["dcir_regularisation"] = int(removed)
    for rule in ("dcir_for_information", "dcir_for_information_strict", "dcir_bse_prs_nat_0", "dcir_ete_ind_taa_1",
                 "dcir_regularisation"):
        assert got.get(rule, 0) == m["cleaning"][rule]["ER_PRS_F"] > 0, rule
    r = m["regularisation"]
    assert r["full_pairs"] > 0 and r["partial_pairs"] > 0
    assert m["cleaning"]["dcir_regularisation"]["ER_PRS_F"] == 2 * r["full_pairs"] + r["partial_pairs"]
    full = con.sql("SELECT count(*) FROM grp WHERE qty <= 0").fetchall()[0][0]
    partial = con.sql("SELECT count(*) FROM grp WHERE qty > 0 AND n > 1").fetchall()[0][0]
    assert (full, partial) == (r["full_pairs"], r["partial_pairs"])
    # cancelling lines come one or two flux months later, with negative detail quantities
    lag = con.sql("""
        SELECT DISTINCT datediff('month', strptime(a.FLX_DIS_DTD, '%d/%m/%Y'), strptime(b.FLX_DIS_DTD, '%d/%m/%Y'))
        FROM cl a JOIN cl b ON a.g = b.g AND CAST(a.PRS_ACT_QTE AS INT) > 0 AND CAST(b.PRS_ACT_QTE AS INT) < 0""").fetchall()
    assert {x for (x,) in lag} <= {1, 2}
    pha = delivery.frames["ER_PHA_F.csv"]
    assert (pha["PHA_ACT_QSN"].astype(int) < 0).any()


def test_cleaning_counts_pmsi(gen, delivery, gen_old, delivery_old):
    for (out, m), dlv in ((gen, delivery), (gen_old, delivery_old)):
        geo = set(m["geographic_finess"])
        for src, key_b, ghm_col, err in (("MCO", "ETA_NUM", "GRG_GHM", "90"), ("SSR", "ETA_NUM", "GRG_GME", "90"),
                                         ("HAD", "ETA_NUM_EPMSI", "ETA_GRP_GHPC", "99")):
            c = dlv.table(f"T_{src}aaC")
            rets = ["NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET"]
            bad = (c[rets] != "0").any(axis=1)
            assert bad.sum() == m["cleaning"]["pmsi_bad_chaining"][f"T_{src}aaC"] > 0
            ph = c["NIR_ANO_17"].isin(PLACEHOLDERS)
            assert ph.sum() == m["cleaning"]["pmsi_placeholder_nir"][f"T_{src}aaC"] > 0
            assert not (ph & bad).any()
            b = dlv.table(f"T_{src}aaB")
            rule = {"MCO": "mco_error_ghm", "SSR": "ssr_error_gme", "HAD": "had_error_ghpc"}[src]
            assert b[ghm_col].str.startswith(err).sum() == m["cleaning"][rule][f"T_{src}aaB"] > 0
            dup = b[key_b].isin(geo) & (b["_year"] <= 2017)
            assert dup.sum() == m["cleaning"]["pmsi_geographic_finess_duplicate"][f"T_{src}aaB"]
            if src == "MCO":
                assert (b["GHS_NUM"] == "9999").sum() == m["cleaning"]["mco_ghs_9999"]["T_MCOaaB"] > 0
        if m["years"][0] <= 2017:
            assert m["cleaning"]["pmsi_geographic_finess_duplicate"]["T_MCOaaB"] > 0
        else:
            assert sum(m["cleaning"]["pmsi_geographic_finess_duplicate"].values()) == 0
        if m["years"][1] >= 2018:
            stays = truth(out, "stays")
            kept_geo = stays[stays["eta_num"].isin(geo)]
            assert len(kept_geo) == sum(m["geographic_finess_kept_stays"].values()) > 0
            assert (kept_geo["end_date"].str[:4].astype(int) >= 2018).all()


# Stay-level tables of each PMSI source: (stay table, chaining table, key, group column, error prefix, error rule)
PMSI_SOURCES = {
    "MCO": ("T_MCOaaB", "T_MCOaaC", ["ETA_NUM", "RSA_NUM"], "GRG_GHM", "90", "mco_error_ghm"),
    "SSR": ("T_SSRaaB", "T_SSRaaC", ["ETA_NUM", "RHA_NUM"], "GRG_GME", "90", "ssr_error_gme"),
    "HAD": ("T_HADaaB", "T_HADaaC", ["ETA_NUM_EPMSI", "RHAD_NUM"], "ETA_GRP_GHPC", "99", "had_error_ghpc"),
    "RIP": ("T_RIPaaRSA", "T_RIPaaC", ["ETA_NUM_EPMSI", "RIP_NUM"], None, None, None),
}
CHAINING = {"PMSI": ["NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET"],
            "ACE": ["NIR_RET", "NAI_RET", "SEX_RET", "IAS_RET", "ENT_DAT_RET"]}
# Billing / valuation tables whose rows follow their stay (visit): source and the rules they are counted under
# (not the placeholder NIR: ingest drops the C row, the sub-rows are then orphans of an incomplete stay).
FOLLOWING = {
    "T_MCOaaVALO": ("MCO", ["pmsi_bad_chaining", "pmsi_geographic_finess_duplicate", "mco_error_ghm", "mco_ghs_9999"]),
    "T_MCOaaDMIP": ("MCO", ["pmsi_bad_chaining", "pmsi_geographic_finess_duplicate", "mco_error_ghm", "mco_ghs_9999"]),
    "T_SSRaaSTC": ("SSR", ["pmsi_bad_chaining", "pmsi_geographic_finess_duplicate", "ssr_error_gme"]),
    "T_HADaaSTC": ("HAD", ["pmsi_bad_chaining", "pmsi_geographic_finess_duplicate", "had_error_ghpc"]),
    "T_RIPaaSTC": ("RIP", ["pmsi_bad_chaining"]),
    "T_RIPaaRSA": ("RIP", ["pmsi_bad_chaining"]),
    "T_MCOaaCSTC": ("ACE", ["pmsi_bad_chaining", "pmsi_placeholder_nir", "pmsi_geographic_finess_duplicate"]),
    "T_MCOaaFBSTC": ("ACE", ["pmsi_bad_chaining", "pmsi_geographic_finess_duplicate"]),
    "T_MCOaaVALOACE": ("ACE", ["pmsi_bad_chaining", "pmsi_geographic_finess_duplicate"]),
}


def stay_fates(dlv: Delivery, src: str) -> pd.DataFrame:
    """Every stay (B x C within a year; ACE: every T_MCOaaCSTC row) with `_rule`, the cleaning rule removing it
    (None when kept), and `_key` (year and stay key)."""
    geo = set(dlv.m["geographic_finess"])
    if src == "ACE":
        s = dlv.table("T_MCOaaCSTC")
        key, codes, grp = ["ETA_NUM", "SEQ_NUM"], CHAINING["ACE"], None
        geo = {g for g in geo if not g.startswith("69")}  # HCL did not duplicate its outpatient visits
    else:
        tb, tc, key, grp, err, _ = PMSI_SOURCES[src]
        b = dlv.table(tb)
        b = b[b[{"SSR": "RHS_NUM", "RIP": "SEQ_SEQ_NUM"}[src]] == "1"] if src in ("SSR", "RIP") else b
        s = b.merge(dlv.table(tc), on=key + ["_year"], suffixes=("", "_c"))
        codes = CHAINING["PMSI"]
    rule = pd.Series([None] * len(s), index=s.index, dtype=object)
    conds = [("pmsi_bad_chaining", ~(s[codes] == "0").all(axis=1)),
             ("pmsi_placeholder_nir", s["NIR_ANO_17"].isna() | s["NIR_ANO_17"].isin(PLACEHOLDERS)),
             ("pmsi_geographic_finess_duplicate", s[key[0]].isin(geo) & (s["_year"] <= 2017))]
    if grp:
        conds.append((PMSI_SOURCES[src][5], s[grp].str.startswith(PMSI_SOURCES[src][4])))
    if src == "MCO":
        conds.append(("mco_ghs_9999", s["GHS_NUM"] == "9999"))
    for name, cond in reversed(conds):  # the first matching rule wins
        rule = rule.mask(cond.fillna(False).astype(bool), name)
    s["_rule"] = rule
    s["_key"] = list(zip(s["_year"], *(s[k] for k in key)))
    return s[["_key", "_rule"]]


def test_cleaning_counts_follow_stays(gen, delivery, gen_old, delivery_old):
    """Rows of the billing / valuation tables and of ACE are counted under their stay's (visit's) rule, per table
    and per file; RIP and ACE stays in `cleaning_stays`."""
    for (out, m), dlv in ((gen, delivery), (gen_old, delivery_old)):
        fates = {src: stay_fates(dlv, src) for src in ("MCO", "SSR", "HAD", "RIP", "ACE")}
        for src in ("RIP", "ACE"):
            got = fates[src]["_rule"].value_counts().to_dict()
            for rule in ("pmsi_bad_chaining", "pmsi_placeholder_nir", "pmsi_geographic_finess_duplicate"):
                assert m["cleaning_stays"][rule][src] == got.get(rule, 0), (src, rule)
            assert m["cleaning_stays"]["pmsi_bad_chaining"][src] > 0 and m["cleaning_stays"]["pmsi_placeholder_nir"][src] > 0
            assert m["cleaning_stays"]["error_group"][src] == m["cleaning_stays"]["mco_ghs_9999"][src] == 0
        for rule in ("pmsi_bad_chaining", "pmsi_placeholder_nir"):
            c = dlv.table("T_RIPaaC")
            n = (~(c[CHAINING["PMSI"]] == "0").all(axis=1)).sum() if rule == "pmsi_bad_chaining" else c["NIR_ANO_17"].isin(PLACEHOLDERS).sum()
            assert m["cleaning"][rule]["T_RIPaaC"] == n > 0, rule
        for table, (src, rules) in FOLLOWING.items():
            key = ["ETA_NUM", "SEQ_NUM"] if src == "ACE" else PMSI_SOURCES[src][2]
            fate = dict(zip(fates[src]["_key"], fates[src]["_rule"]))
            for fname, e in m["files"].items():
                if e["table"] != table:
                    continue
                rows = dlv.frames[fname]
                keys = list(zip([e["year"]] * len(rows), *(rows[k] for k in key)))
                assert all(k in fate for k in keys), fname  # every row has its stay (visit)
                got = pd.Series([fate[k] for k in keys], dtype=object).value_counts().to_dict()
                assert e["cleaning"] == {r: got.get(r, 0) for r in rules}, fname
            total = {}
            for fname, e in m["files"].items():
                if e["table"] == table:
                    for r, k in e["cleaning"].items():
                        total[r] = total.get(r, 0) + k
            for rule, tables in m["cleaning"].items():
                assert tables.get(table, 0) == total.get(rule, 0), (table, rule)
        if m["years"][0] <= 2017:
            for t in ("T_MCOaaCSTC", "T_MCOaaFBSTC", "T_MCOaaVALOACE", "T_MCOaaVALO"):
                assert m["cleaning"]["pmsi_geographic_finess_duplicate"][t] > 0, t
        assert m["cleaning"]["pmsi_bad_chaining"]["T_MCOaaVALO"] > 0 and m["cleaning"]["pmsi_bad_chaining"]["T_MCOaaFBSTC"] > 0


DCIR_KEYS = ["FLX_DIS_DTD", "FLX_TRT_DTD", "FLX_EMT_TYP", "FLX_EMT_NUM", "FLX_EMT_ORD", "ORG_CLE_NUM", "DCT_ORD_NUM",
             "PRS_ORD_NUM", "REM_TYP_AFF"]


def _cents(s: pd.Series) -> pd.Series:
    return (s.astype(float) * 100).round().astype("int64")


@pytest.mark.parametrize("which", ["default", "old"])
def test_hospital_cost_world(which, gen, delivery, gen_old, delivery_old):
    """The world behind the cost tables: private clinic stays in DCIR and PMSI, public-only valuation and extras,
    ACE visits, billing tables, transport lines."""
    _, m = gen if which == "default" else gen_old
    dlv = delivery if which == "default" else delivery_old
    lay = "dmy" if m["dcir_dates"] == "dmy" else "iso"
    fin = pd.read_csv(ROOT / "snds_synth" / "reference" / "finess.csv", sep=";", dtype=str)
    public, private = set(fin.loc[fin["sector"] == "public", "finess"]), set(fin.loc[fin["sector"] == "private", "finess"])
    prs, ete = dlv.frames["ER_PRS_F.csv"].copy(), dlv.frames["ER_ETE_F.csv"]
    prs["dtd"], prs["dtf"] = _iso(prs["EXE_SOI_DTD"], lay), _iso(prs["EXE_SOI_DTF"], lay)

    # private clinic lines: nature 2211, never overlapping per patient and clinic
    clin = ete.merge(prs, on=DCIR_KEYS)
    clin = clin[clin["ETB_EXE_FIN"].isin(private)].sort_values(["BEN_NIR_PSA", "ETB_EXE_FIN", "dtd", "dtf"])
    assert len(clin) > 0 and (clin["PRS_NAT_REF"] == "2211").all() and not (prs["PRS_NAT_REF"] == "2252").any()
    same = (clin["BEN_NIR_PSA"] == clin["BEN_NIR_PSA"].shift()) & (clin["ETB_EXE_FIN"] == clin["ETB_EXE_FIN"].shift())
    assert not (same & (clin["dtd"] <= clin["dtf"].shift())).any()
    # ... each one is an MCO stay at the clinic with the same dates, and every private MCO stay is one of them
    c = dlv.table("T_MCOaaC")
    c["start"], c["end"] = _mco_stay_dates(c)
    cp = c[c["ETA_NUM"].isin(private)]
    lines = set(zip(clin["BEN_NIR_PSA"], clin["ETB_EXE_FIN"], clin["dtd"], clin["dtf"]))
    stays = set(zip(cp["NIR_ANO_17"], cp["ETA_NUM"], cp["start"], cp["end"]))
    ph = {(e, a, b_) for n, e, a, b_ in stays if n in PLACEHOLDERS}
    assert all(x in stays or x[1:] in ph for x in lines)
    assert all(x in lines for x in stays if x[0] not in PLACEHOLDERS)
    b = dlv.table("T_MCOaaB")
    assert set(b["ETA_NUM"]) <= public | private and set(b["ETA_NUM"]) & private
    # valuation rows: exactly the public stays (B x C), MED and DMIP rows at public establishments only
    bc = b.merge(c, on=["_year", "ETA_NUM", "RSA_NUM"])
    pub = set(zip(*(bc.loc[bc["ETA_NUM"].isin(public), k] for k in ("_year", "ETA_NUM", "RSA_NUM"))))
    valo = dlv.table("T_MCOaaVALO")
    assert set(zip(valo["_year"], valo["ETA_NUM"], valo["RSA_NUM"])) == pub and len(valo) == len(pub)
    nv = valo["VALO"].isna() | (valo["VALO"] == "0")
    assert nv.any() and (valo.loc[nv, ["MNT_GHS_AM", "MNT_TOT_AM"]] == "0.00").all().all()
    assert (_cents(valo["MNT_TOT_AM"]) >= _cents(valo["MNT_GHS_AM"])).all()
    for t, code in (("T_MCOaaMED", "UCD_UCD_COD"), ("T_MCOaaDMIP", "LPP_COD")):
        x = dlv.table(t)
        assert len(x) and set(x["ETA_NUM"]) <= public, t
        assert not x.duplicated(["_year", "ETA_NUM", "RSA_NUM", code]).any(), t
    med = dlv.table("T_MCOaaMED")
    assert ((_cents(med["ADM_NBR_PRI"]) * 1000) % (med["ADM_NBR"].astype(float) * 1000).round().astype("int64") == 0).all()
    dm = dlv.table("T_MCOaaDMIP")
    assert (dm["LPP_COD"] == dm["TIP_PRS_IDE"]).all() and dm["NBR_POS"].isin(["1", "2"]).all()
    assert (_cents(dm["NBR_POS_PRI"]) % dm["NBR_POS"].astype(int) == 0).all()
    # stays with their modes: TYP_GEN_RSA, ENT_MOD / SOR_MOD '0' never on a death stay
    assert set(b["TYP_GEN_RSA"]) <= {"0", "1"} and (b.loc[b["TYP_GEN_RSA"] == "1", "_year"] >= 2015).all()
    assert (b["ENT_MOD"] == "0").any() and (b["SOR_MOD"] == "0").any() and not ((b["ENT_MOD"] == "0") & (b["SOR_MOD"] == "9")).any()

    # billing tables: one row per stay, amounts 0 when not billable, base >= amount
    for src, t, fac in (("SSR", "T_SSRaaSTC", "SEJ_FAC_AM"), ("HAD", "T_HADaaSTC", "FAC_SEJ_AM"), ("RIP", "T_RIPaaSTC", "SEJ_FAC_AM")):
        key = PMSI_SOURCES[src][2]
        x = dlv.table(t)
        cc = dlv.table(PMSI_SOURCES[src][1])
        assert not x.duplicated(["_year"] + key).any() and set(zip(*(x[k] for k in ["_year"] + key))) <= set(
            zip(*(cc[k] for k in ["_year"] + key))), t
        assert set(x[fac]) <= {"0", "1"} and (x.loc[x[fac] == "0", ["TOT_MNT_AM", "REM_BAS_MNT"]] == "0.00").all().all(), t
        assert (_cents(x["REM_BAS_MNT"]) >= _cents(x["TOT_MNT_AM"])).all(), t
    rsa = dlv.table("T_RIPaaRSA")
    assert rsa["DGN_PAL"].str.startswith("F").all() and rsa["RIP_NUM"].str.fullmatch(r"\d{7}").all()
    assert (rsa["SEQ_SEQ_NUM"] == "1").all() and set(rsa["ENT_MOD"]) | set(rsa["SOR_MOD"]) <= {"6", "7", "8"}

    # ACE: one CSTC and one VALOACE row per visit, 1-2 acts; amounts; geographic copies
    cs, fb, va = dlv.table("T_MCOaaCSTC"), dlv.table("T_MCOaaFBSTC"), dlv.table("T_MCOaaVALOACE")
    k = ["_year", "ETA_NUM", "SEQ_NUM"]
    assert cs["SEQ_NUM"].str.fullmatch(r"\d{9}").all() and not cs.duplicated(k).any() and not va.duplicated(k).any()
    assert set(zip(*(va[c_] for c_ in k))) == set(zip(*(cs[c_] for c_ in k)))
    n_act = fb.groupby(k).size()
    assert n_act.between(1, 2).all() and len(n_act) == len(cs)
    assert (cs["EXE_SOI_DTD"] == cs["EXE_SOI_DTF"]).all() and (cs["ENT_DAT"] == cs["SOR_DAT"]).all()
    assert (cs["EXE_SOI_DTD"].str[:4].astype(int) == cs["_year"]).all() and set(cs["ETA_NUM"]) <= public
    fb["br"] = _cents(fb["REM_BAS"])
    agg = fb.groupby(k).agg(br=("br", "sum"), rate=("REM_TAU", "first")).reset_index()
    v = va.merge(agg, on=k)
    valued = v["valo"] == "1"
    assert (~valued).any() and set(v["valo"].dropna()) <= {"0", "1"}
    assert (_cents(v.loc[valued, "mnt_br"]) == v.loc[valued, "br"]).all()
    assert (_cents(v.loc[valued, "mnt_remb"]) * 100 == v.loc[valued, "br"] * v.loc[valued, "rate"].astype(int)).all()
    assert (v.loc[~valued, ["mnt_br", "mnt_remb"]] == "0.00").all().all()
    groups = dict(zip(fin["finess"], fin["group"].fillna("")))
    legal = {g: f for f, kind, g in zip(fin["finess"], fin["kind"], fin["group"]) if kind == "legal"}
    site = cs["ETA_NUM"].map(lambda e: groups.get(e, "") if e in set(m["geographic_finess"]) else "")
    old = cs["_year"] <= 2017
    assert not (old & (site == "HCL") & cs.duplicated(["_year", "SEQ_NUM"], keep=False)).any()
    copies = cs[old & site.isin(["APHP", "APHM"])]
    twins = set(zip(cs["_year"], cs["ETA_NUM"], cs["SEQ_NUM"]))
    assert all((y, legal[site[i]], s_) in twins for i, y, s_ in zip(copies.index, copies["_year"], copies["SEQ_NUM"]))
    if m["years"][0] <= 2017:
        assert len(copies) > 0 and (old & (site == "HCL")).any()

    # medical transport: natures 4212-4214, rate 65 (100 when exonerated), no detail row, exact reimbursement
    tr = prs[prs["PRS_NAT_REF"].isin(["4212", "4213", "4214"])]
    assert set(tr["PRS_NAT_REF"]) == {"4212", "4213", "4214"} and set(tr["RGO_REM_TAU"]) <= {"65", "100"}
    assert (_cents(tr["BSE_REM_MNT"]) * 100 == _cents(tr["BSE_REM_BSE"]) * tr["RGO_REM_TAU"].astype(int)).all()
    for t in ("ER_PHA_F", "ER_BIO_F", "ER_CAM_F", "ER_TIP_F", "ER_UCD_F", "ER_ETE_F"):
        assert dlv.frames[f"{t}.csv"].merge(tr, on=DCIR_KEYS).empty, t


# --------------------------------------------------------------------------------------------- reference model
def _iso(s: pd.Series, layout: str) -> pd.Series:
    if layout == "dmy":
        return s.str[6:10] + "-" + s.str[3:5] + "-" + s.str[0:2]
    if layout == "dmy8":
        return s.str[4:8] + "-" + s.str[2:4] + "-" + s.str[0:2]
    if layout == "sas":
        return s.str[5:9] + "-" + s.str[2:5].map(lambda x: f"{MONTHS[x]:02d}", na_action="ignore") + "-" + s.str[0:2]
    return s


def _mco_stay_dates(c: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """RULES.md: EXE_SOI_DTD/EXE_SOI_DTF, else ENT_DAT/SOR_DAT (an unreadable date is nulled at ingest)."""
    return (_iso(c["EXE_SOI_DTD"], "sas").fillna(_iso(c["ENT_DAT"], "dmy8")),
            _iso(c["EXE_SOI_DTF"], "sas").fillna(_iso(c["SOR_DAT"], "dmy8")))


def reference_events(dlv: Delivery, con=None) -> dict[str, pd.DataFrame]:
    """The event definitions of docs/synthetic-data.md, computed from the delivered files."""
    m = dlv.m
    lay = "dmy" if m["dcir_dates"] == "dmy" else "iso"
    con = con or duckdb.connect()
    prs = dlv.frames["ER_PRS_F.csv"].copy()
    for c in ("EXE_SOI_DTD", "EXE_SOI_DTF", "BEN_DCD_DTE"):
        prs[c] = _iso(prs[c], lay)
    con.register("prs", prs)
    con.register("ete", dlv.frames["ER_ETE_F.csv"])
    _kept_dcir(con)
    keys = "DCT_ORD_NUM, FLX_DIS_DTD, FLX_TRT_DTD, FLX_EMT_TYP, FLX_EMT_NUM, FLX_EMT_ORD, ORG_CLE_NUM, PRS_ORD_NUM, REM_TYP_AFF"
    # kept groups: one representative line (the positive one), net quantity and amounts
    con.sql(f"""
        CREATE OR REPLACE VIEW kg AS
        SELECT g, any_value(BEN_NIR_PSA) AS pid, any_value(EXE_SOI_DTD) AS date, any_value(EXE_SOI_DTF) AS end_date,
               any_value(PRS_NAT_REF) AS nat,
               any_value(PSE_SPE_COD) AS spe, any_value(CPL_MAJ_TOP) AS maj, any_value(CPL_AFF_COD) AS aff,
               sum(CAST(PRS_ACT_QTE AS DOUBLE)) AS qty,
               round(sum(CAST(PRS_PAI_MNT AS DECIMAL(18,2))), 2) AS paid, round(sum(CAST(BSE_REM_BSE AS DECIMAL(18,2))), 2) AS base,
               round(sum(CAST(BSE_REM_MNT AS DECIMAL(18,2)) + CAST(CPL_REM_MNT AS DECIMAL(18,2))), 2) AS reimb,
               max(BEN_CMU_TOP) FILTER (WHERE BEN_CMU_TOP = '1') AS cmu
        FROM cl GROUP BY g HAVING sum(CAST(PRS_ACT_QTE AS DOUBLE)) > 0""")
    ev = {}
    ev["consults"] = con.sql(f"""
        SELECT pid AS patient_id, date, nat AS PRS_NAT_REF, spe AS PSE_SPE_COD FROM kg
        WHERE CAST(nat AS INT) IN {CONSULT_NATURES} AND CAST(maj AS INT) < 2 AND aff <> '16' AND qty > 0""").df()

    def netted(table: str, code: str, qty: str) -> str:
        con.register("det", dlv.frames[f"{table}.csv"])
        con.sql(f"""CREATE OR REPLACE TABLE n_{table} AS
            SELECT cl.g, any_value(cl.BEN_NIR_PSA) AS pid, any_value(cl.EXE_SOI_DTD) AS date, d.{code} AS code,
                   CAST(sum(CAST(d.{qty} AS BIGINT)) AS BIGINT) AS quantity
            FROM det d JOIN cl USING ({keys}) WHERE cl.g IN (SELECT g FROM kg)
            GROUP BY cl.g, d.{code} HAVING sum(CAST(d.{qty} AS BIGINT)) > 0""")
        con.unregister("det")
        return f"n_{table}"

    ev["biology"] = con.sql(f"SELECT pid AS patient_id, date, code, quantity FROM {netted('ER_BIO_F', 'BIO_PRS_IDE', 'BIO_ACT_QSN')}").df()
    ev["devices"] = con.sql(f"SELECT pid AS patient_id, date, code, quantity FROM {netted('ER_TIP_F', 'TIP_PRS_IDE', 'TIP_ACT_QSN')}").df()
    con.register("pha_r", dlv.frames["IR_PHA_R.csv"])
    con.register("ddd_r", dlv.frames["REF_ATC_DDD.csv"])
    ev["drug_dispensations"] = con.sql(f"""
        SELECT n.pid AS patient_id, n.date, n.code AS cip13, r.PHA_ATC_C07 AS atc, n.quantity,
               printf('%.3f', round(n.quantity * CAST(r.PHA_UPC_NBR AS DOUBLE) * CAST(r.PHA_SUB_DOS AS DOUBLE)
                                    / CAST(d.DDD_VAL AS DOUBLE), 3)) AS ddd
        FROM {netted('ER_PHA_F', 'PHA_PRS_C13', 'PHA_ACT_QSN')} n JOIN pha_r r ON r.PHA_CIP_C13 = n.code
        JOIN ddd_r d ON d.ATC_COD = r.PHA_ATC_C07""").df()
    con.register("cam", dlv.frames["ER_CAM_F.csv"])
    dcir_proc = con.sql(f"""
        SELECT cl.BEN_NIR_PSA AS patient_id, c.CAM_PRS_IDE AS code, cl.EXE_SOI_DTD AS date, 'DCIR' AS source
        FROM cam c JOIN cl USING ({keys}) WHERE cl.g IN (SELECT g FROM kg)""").df()
    con.register("cat", pd.DataFrame({"nat": [str(k) for k in COST_CATEGORY], "category": list(COST_CATEGORY.values())}))
    ev["cmuc"] = con.sql("SELECT DISTINCT pid AS patient_id, CAST(substr(date, 1, 4) AS INT) AS year FROM kg WHERE cmu = '1'").df()

    # PMSI: B x C, cleaned
    geo = "(" + ",".join(f"'{g}'" for g in m["geographic_finess"]) + ")"
    stays, diags, procs = [], [], []
    for src, key, ghm_col, err in (("MCO", ["ETA_NUM", "RSA_NUM"], "GRG_GHM", "90"), ("SSR", ["ETA_NUM", "RHA_NUM"], "GRG_GME", "90"),
                                   ("HAD", ["ETA_NUM_EPMSI", "RHAD_NUM"], "ETA_GRP_GHPC", "99")):
        b = dlv.table(f"T_{src}aaB")
        c = dlv.table(f"T_{src}aaC")
        if src == "MCO":
            c["start"], c["end"] = _mco_stay_dates(c)
        elif src == "SSR":
            c["start"], c["end"] = _iso(c["ENT_DAT"], "dmy8"), _iso(c["SOR_DAT"], "dmy8")
            b = b[b["RHS_NUM"] == "1"]
        else:
            c["start"], c["end"] = c["EXE_SOI_DTD"], c["EXE_SOI_DTF"]
        con.register("b", b)
        con.register("c", c)
        on = " AND ".join(f"b.{k} = c.{k}" for k in key)
        extra = " AND b.GHS_NUM IS DISTINCT FROM '9999'" if src == "MCO" else ""
        typ = "b.TYP_GEN_RSA" if src == "MCO" else "NULL"
        con.sql(f"""CREATE OR REPLACE TABLE k_{src} AS
            SELECT c.NIR_ANO_17 AS patient_id, '{src}' AS source, c.{key[0]} AS eta_num, c.{key[1]} AS stay_id,
                   c.start AS start_date, c."end" AS end_date, b.ENT_MOD, b.SOR_MOD, b.{ghm_col} AS ghm, c._year AS year,
                   {typ} AS typ
            FROM b JOIN c ON {on}
            WHERE c.NIR_RET = '0' AND c.NAI_RET = '0' AND c.SEX_RET = '0' AND c.SEJ_RET = '0' AND c.FHO_RET = '0'
              AND c.PMS_RET = '0' AND c.DAT_RET = '0' AND c.NIR_ANO_17 IS NOT NULL
              AND c.NIR_ANO_17 NOT IN ('xxxxxxxxxxxxxxxxx', 'XXXXXXXXXXXXXXXXD')
              AND NOT starts_with(b.{ghm_col}, '{err}') {extra}
              AND NOT (c.{key[0]} IN {geo} AND c._year <= 2017)""")
        stays.append(con.sql(f"SELECT * EXCLUDE (year, typ) FROM k_{src}").df())
        kj = " AND ".join(f"k.{a} = x.{b_}" for a, b_ in (("eta_num", key[0]), ("stay_id", key[1])))
        norm = lambda col: f"replace(x.{col}, '.', '')"  # noqa: E731
        if src == "MCO":
            con.register("x", b)
            diags.append(con.sql(f"""
                SELECT k.patient_id, {norm('DGN_PAL')} AS code, 'MCO' AS source, 'DP' AS diagnosis_type, k.start_date AS date, k.year
                FROM k_MCO k JOIN x ON {kj}
                UNION ALL
                SELECT k.patient_id, {norm('DGN_REL')}, 'MCO', 'DR', k.start_date, k.year FROM k_MCO k JOIN x ON {kj}
                WHERE x.DGN_REL IS NOT NULL""").df())
            con.unregister("x")
            con.register("x", dlv.table("T_MCOaaD"))
            diags.append(con.sql(f"SELECT k.patient_id, {norm('ASS_DGN')}, 'MCO', 'DAS', k.start_date, k.year FROM k_MCO k JOIN x ON {kj}").df())
            con.unregister("x")
            con.register("x", dlv.table("T_MCOaaA"))
            procs.append(con.sql(f"""SELECT k.patient_id, x.CDC_ACT AS code,
                strftime(CAST(k.start_date AS DATE) + CAST(x.ENT_DAT_DEL AS INT), '%Y-%m-%d') AS date, 'MCO' AS source
                FROM k_MCO k JOIN x ON {kj}""").df())
            con.unregister("x")
        elif src == "SSR":
            con.register("x", dlv.table("T_SSRaaB"))
            diags.append(con.sql(f"""
                SELECT DISTINCT k.stay_id, k.eta_num, k.patient_id, {norm('MOR_PRP')} AS code, 'SSR' AS source, 'MP' AS diagnosis_type, k.start_date AS date, k.year
                FROM k_SSR k JOIN x ON {kj}
                UNION
                SELECT DISTINCT k.stay_id, k.eta_num, k.patient_id, {norm('ETL_AFF')}, 'SSR', 'AE', k.start_date, k.year FROM k_SSR k JOIN x ON {kj}""")
                         .df().drop(columns=["stay_id", "eta_num"]))
            con.unregister("x")
            con.register("x", dlv.table("T_SSRaaD"))
            diags.append(con.sql(f"""SELECT DISTINCT k.stay_id, k.eta_num, k.patient_id, {norm('DGN_COD')} AS code, 'SSR' AS source, 'DAS' AS diagnosis_type,
                k.start_date AS date, k.year FROM k_SSR k JOIN x ON {kj}""").df().drop(columns=["stay_id", "eta_num"]))
            con.unregister("x")
            con.register("x", dlv.table("T_SSRaaCCAM"))
            procs.append(con.sql(f"""SELECT k.patient_id, x.CCAM_ACT AS code,
                strftime(CAST(k.start_date AS DATE) + CAST(x.CCAM_DEL_ENT_UM AS INT), '%Y-%m-%d') AS date, 'SSR' AS source
                FROM k_SSR k JOIN x ON {kj}""").df())
            con.unregister("x")
        else:
            con.register("x", b)
            diags.append(con.sql(f"SELECT k.patient_id, {norm('DGN_PAL')} AS code, 'HAD' AS source, 'DP' AS diagnosis_type, k.start_date AS date, k.year FROM k_HAD k JOIN x ON {kj}").df())
            con.unregister("x")
            con.register("x", dlv.table("T_HADaaD"))
            diags.append(con.sql(f"SELECT k.patient_id, {norm('DGN_ASS')}, 'HAD', 'DAS', k.start_date, k.year FROM k_HAD k JOIN x ON {kj}").df())
            con.unregister("x")
        con.unregister("b")
        con.unregister("c")
    # RIP (RIM-P): T_RIPaaRSA (first sequence) x T_RIPaaC; stays only (no diagnoses, no acts, no group)
    b = dlv.table("T_RIPaaRSA")
    con.register("b", b[b["SEQ_SEQ_NUM"] == "1"])
    con.register("c", dlv.table("T_RIPaaC"))
    con.sql(f"""CREATE OR REPLACE TABLE k_RIP AS
        SELECT c.NIR_ANO_17 AS patient_id, 'RIP' AS source, c.ETA_NUM_EPMSI AS eta_num, c.RIP_NUM AS stay_id,
               c.EXE_SOI_DTD AS start_date, c.EXE_SOI_DTF AS end_date, b.ENT_MOD, b.SOR_MOD, NULL AS ghm, c._year AS year
        FROM b JOIN c ON b._year = c._year AND b.ETA_NUM_EPMSI = c.ETA_NUM_EPMSI AND b.RIP_NUM = c.RIP_NUM
        WHERE c.NIR_RET = '0' AND c.NAI_RET = '0' AND c.SEX_RET = '0' AND c.SEJ_RET = '0' AND c.FHO_RET = '0'
          AND c.PMS_RET = '0' AND c.DAT_RET = '0' AND c.NIR_ANO_17 IS NOT NULL
          AND c.NIR_ANO_17 NOT IN ('xxxxxxxxxxxxxxxxx', 'XXXXXXXXXXXXXXXXD')
          AND NOT (c.ETA_NUM_EPMSI IN {geo} AND c._year <= 2017)""")
    stays.append(con.sql("SELECT * EXCLUDE (year) FROM k_RIP").df())
    con.unregister("b")
    con.unregister("c")
    ev["stays"] = pd.concat(stays, ignore_index=True)
    ev.update(reference_costs(dlv, con, keys, geo))
    for d in diags:
        d.columns = ["patient_id", "code", "source", "diagnosis_type", "date", "year"]
    dg = pd.concat(diags, ignore_index=True)
    dg["end_date"] = ""
    imb = dlv.frames["IR_IMB_R.csv"]
    imb = imb[imb["MED_NCL_IDT"] == "CIM10"]
    ald = pd.DataFrame({"patient_id": imb["BEN_NIR_PSA"], "code": imb["MED_MTF_COD"].str.replace(".", "", regex=False),
                        "source": "ALD", "diagnosis_type": "ALD", "date": _iso(imb["IMB_ALD_DTD"], lay),
                        "end_date": _iso(imb["IMB_ALD_DTF"], lay).replace("1600-01-01", "")})
    ald["year"] = ald["date"].str[:4]
    ev["diagnoses"] = pd.concat([dg, ald], ignore_index=True)
    ev["procedures"] = pd.concat([dcir_proc] + procs, ignore_index=True)

    # deaths and patients
    ben = dlv.frames["IR_BEN_R.csv"]
    src_rows = []
    d_ir = ben[ben["BEN_DCD_AME"] != "160001"]
    src_rows.append(pd.DataFrame({"patient_id": d_ir["BEN_NIR_PSA"], "source": "IR_BEN_R", "death_date": _iso(d_ir["BEN_DCD_DTE"], lay)}))
    d_dc = con.sql("SELECT DISTINCT BEN_NIR_PSA AS patient_id, 'DCIR' AS source, BEN_DCD_DTE AS death_date FROM cl WHERE BEN_DCD_AME <> '160001'").df()
    src_rows.append(d_dc)
    mco = ev["stays"][(ev["stays"]["source"] == "MCO") & (ev["stays"]["SOR_MOD"] == "9")]
    src_rows.append(pd.DataFrame({"patient_id": mco["patient_id"], "source": "PMSI", "death_date": mco["end_date"]}))
    ki = dlv.frames["KI_CCI_R.csv"].merge(ben[["BEN_IDT_ANO", "BEN_NIR_PSA"]], on="BEN_IDT_ANO")
    src_rows.append(pd.DataFrame({"patient_id": ki["BEN_NIR_PSA"], "source": "KI_CCI_R", "death_date": _iso(ki["BEN_DCD_DTE"], lay)}))
    ev["deaths_by_source"] = pd.concat(src_rows, ignore_index=True)
    dd = ev["deaths_by_source"].copy()
    dd["d"] = pd.to_datetime(dd["death_date"])
    agg = dd.groupby("patient_id")["d"].agg(["min", "max"])
    last = pd.concat([con.sql("SELECT pid AS patient_id, date FROM kg").df(),
                      ev["stays"][["patient_id", "end_date"]].rename(columns={"end_date": "date"})]).groupby("patient_id")["date"].max()
    pat = pd.DataFrame({"patient_id": ben["BEN_NIR_PSA"], "sex": ben["BEN_SEX_COD"], "birth_year": ben["BEN_NAI_ANN"],
                        "birth_month": ben["BEN_NAI_MOI"].astype(int).astype(str)})
    # plus the patients of the events that IR_BEN_R does not have (a delivery without IR_BEN_R): sex and birth
    # year from their DCIR lines, else unknown
    seen = set(con.sql("SELECT pid FROM kg").df()["pid"]) | set(ev["stays"]["patient_id"]) \
        | set(ev["deaths_by_source"]["patient_id"]) | set(ev["diagnoses"]["patient_id"])
    others = sorted(seen - set(pat["patient_id"]))
    if others:
        dc = con.sql("""SELECT BEN_NIR_PSA AS patient_id, any_value(BEN_SEX_COD) AS sex, any_value(BEN_NAI_ANN) AS birth_year
                        FROM cl WHERE g IN (SELECT g FROM kg) GROUP BY ALL""").df().set_index("patient_id")
        pat = pd.concat([pat, pd.DataFrame({"patient_id": others, "sex": [dc["sex"].get(i, "") for i in others],
                                            "birth_year": [dc["birth_year"].get(i, "") for i in others], "birth_month": ""})],
                        ignore_index=True)
    pat["death_date"] = pat["patient_id"].map(agg["max"]).dt.strftime("%Y-%m-%d").fillna("")
    incoherent = ((agg["max"] - agg["min"]).dt.days >= 7).astype(int).astype(str)
    pat["incoherent_death"] = pat["patient_id"].map(incoherent).fillna("0")
    pat["last_contact_date"] = pat["patient_id"].map(last).fillna("")
    ev["patients"] = pat
    return ev


def _ace_visits(con, dlv: Delivery, geo: str) -> None:
    """Table `ace`: every T_MCOaaCSTC row with its fate (`_rule`, NULL = kept)."""
    con.register("cstc", dlv.table("T_MCOaaCSTC"))
    con.sql(f"""CREATE OR REPLACE TABLE ace AS
        SELECT *, CASE
            WHEN NOT (coalesce(NIR_RET = '0' AND NAI_RET = '0' AND SEX_RET = '0' AND IAS_RET = '0' AND ENT_DAT_RET = '0', false))
                THEN 'pmsi_bad_chaining'
            WHEN NIR_ANO_17 IS NULL OR NIR_ANO_17 IN ('xxxxxxxxxxxxxxxxx', 'XXXXXXXXXXXXXXXXD') THEN 'pmsi_placeholder_nir'
            WHEN _year <= 2017 AND ETA_NUM IN {geo} AND NOT starts_with(ETA_NUM, '69') THEN 'pmsi_geographic_finess_duplicate'
            END AS _rule
        FROM cstc""")
    con.unregister("cstc")


BILLED = (("SSR", "T_SSRaaSTC", "ETA_NUM", "RHA_NUM", "SEJ_FAC_AM"), ("HAD", "T_HADaaSTC", "ETA_NUM_EPMSI", "RHAD_NUM", "FAC_SEJ_AM"),
          ("RIP", "T_RIPaaSTC", "ETA_NUM_EPMSI", "RIP_NUM", "SEJ_FAC_AM"))
PATIENT_YEAR = ["consult", "procedure", "drug", "biology", "device", "transport", "other", "hospital_mco", "hospital_ace",
                "hospital_ssr", "hospital_had", "hospital_rip", "hospital_extras"]


def reference_costs(dlv: Delivery, con, keys: str, geo: str) -> dict[str, pd.DataFrame]:
    """The medico-economic tables of docs/synthetic-data.md, from the delivered files (`con` holds the kept
    DCIR groups `kg`, their lines `cl`, ER_ETE_F `ete` and the kept stays `k_MCO`, `k_SSR`, `k_HAD`, `k_RIP`)."""
    ev = {}
    for t in ("T_MCOaaVALO", "T_MCOaaMED", "T_MCOaaDMIP", "T_MCOaaVALOACE", "T_SSRaaSTC", "T_HADaaSTC", "T_RIPaaSTC"):
        con.register(t, dlv.table(t))
    # DCIR claims matched to a kept MCO stay: an ER_ETE_F row at the stay's FINESS, same patient, dates inside
    con.sql(f"""CREATE OR REPLACE TABLE att AS
        SELECT DISTINCT kg.g, s.eta_num, s.stay_id, s.year
        FROM kg JOIN cl ON cl.g = kg.g JOIN ete e USING ({keys})
        JOIN k_MCO s ON s.eta_num = e.ETB_EXE_FIN AND s.patient_id = kg.pid AND kg.date >= s.start_date
                     AND coalesce(kg.end_date, kg.date) <= s.end_date""")
    (n, distinct), = con.sql("SELECT count(*), count(DISTINCT g) FROM att").fetchall()
    assert n == distinct, "a DCIR claim matches two stays"
    ev["costs_outpatient"] = con.sql("""
        SELECT pid AS patient_id, date, end_date, kg.nat AS PRS_NAT_REF, coalesce(c.category, 'other') AS category,
               CAST(paid AS VARCHAR) AS paid, CAST(base AS VARCHAR) AS base, CAST(reimb AS VARCHAR) AS reimbursed
        FROM kg LEFT JOIN cat c ON c.nat = kg.nat WHERE kg.g NOT IN (SELECT g FROM att)""").df()
    _ace_visits(con, dlv, geo)
    billed = " ".join(f"""UNION ALL
        SELECT k.patient_id, '{src}', k.eta_num, k.stay_id, k.start_date, k.end_date, 'PMSI', CAST(t.REM_BAS_MNT AS DECIMAL(18,2)),
               CAST(t.TOT_MNT_AM AS DECIMAL(18,2)), k.year
        FROM k_{src} k JOIN {table} t ON t._year = k.year AND t.{eta} = k.eta_num AND t.{ident} = k.stay_id
        WHERE t.{fac} = '1'""" for src, table, eta, ident, fac in BILLED)
    con.sql(f"""CREATE OR REPLACE TABLE hosp AS
        SELECT k.patient_id, 'MCO' AS source, k.eta_num, k.stay_id, k.start_date, k.end_date, 'PMSI' AS valuation,
               CAST(NULL AS DECIMAL(18,2)) AS base, CAST(v.MNT_TOT_AM AS DECIMAL(18,2)) AS reimb, k.year
        FROM k_MCO k JOIN T_MCOaaVALO v ON v._year = k.year AND v.ETA_NUM = k.eta_num AND v.RSA_NUM = k.stay_id
        WHERE v.VALO IS NOT NULL AND v.VALO <> '0' AND k.ENT_MOD <> '0' AND k.SOR_MOD <> '0' AND (k.year < 2015 OR k.typ = '0')
        UNION ALL
        SELECT k.patient_id, 'MCO', k.eta_num, k.stay_id, k.start_date, k.end_date, 'DCIR', sum(kg.base), sum(kg.reimb), k.year
        FROM att JOIN kg USING (g) JOIN k_MCO k USING (eta_num, stay_id, year) GROUP BY ALL
        UNION ALL
        SELECT a.NIR_ANO_17, 'ACE', a.ETA_NUM, a.SEQ_NUM, a.EXE_SOI_DTD, a.EXE_SOI_DTF, 'PMSI', CAST(v.mnt_br AS DECIMAL(18,2)),
               CAST(v.mnt_remb AS DECIMAL(18,2)), a._year
        FROM ace a JOIN T_MCOaaVALOACE v ON v._year = a._year AND v.ETA_NUM = a.ETA_NUM AND v.SEQ_NUM = a.SEQ_NUM
        WHERE a._rule IS NULL AND v.valo IS NOT NULL AND v.valo <> '0'
        {billed}""")
    ev["costs_hospital_stays"] = con.sql("""
        SELECT patient_id, source, eta_num, stay_id, start_date, end_date, valuation, CAST(base AS VARCHAR) AS base,
               CAST(reimb AS VARCHAR) AS reimbursed FROM hosp""").df()
    con.sql("""CREATE OR REPLACE TABLE extras AS
        SELECT h.patient_id, 'MCO' AS source, h.eta_num, h.stay_id,
               strftime(CAST(h.start_date AS DATE) + CAST(m.DELAI AS INT), '%Y-%m-%d') AS date, 'drug' AS kind,
               m.UCD_UCD_COD AS code, CAST(m.ADM_NBR AS DECIMAL(18,3)) AS quantity, CAST(m.ADM_NBR_PRI AS DECIMAL(18,2)) AS amount
        FROM hosp h JOIN T_MCOaaMED m ON m._year = h.year AND m.ETA_NUM = h.eta_num AND m.RSA_NUM = h.stay_id
        WHERE h.source = 'MCO' AND h.valuation = 'PMSI'
        UNION ALL
        SELECT h.patient_id, 'MCO', h.eta_num, h.stay_id, strftime(CAST(h.start_date AS DATE) + CAST(m.DELAI AS INT), '%Y-%m-%d'),
               'device', trim(m.LPP_COD), CAST(m.NBR_POS AS DECIMAL(18,3)), CAST(m.NBR_POS_PRI AS DECIMAL(18,2))
        FROM hosp h JOIN T_MCOaaDMIP m ON m._year = h.year AND m.ETA_NUM = h.eta_num AND m.RSA_NUM = h.stay_id
        WHERE h.source = 'MCO' AND h.valuation = 'PMSI'""")
    ev["costs_hospital_extras"] = con.sql("""
        SELECT * EXCLUDE (quantity, amount), CAST(quantity AS VARCHAR) AS quantity, CAST(amount AS VARCHAR) AS amount
        FROM extras""").df()
    sums = ", ".join(f"CAST(sum(CASE WHEN col = '{c}' THEN amt ELSE 0 END) AS VARCHAR) AS {c}" for c in PATIENT_YEAR)
    ev["costs_patient_year"] = con.sql(f"""
        WITH r AS (
            SELECT pid AS patient_id, CAST(substr(date, 1, 4) AS INT) AS year, coalesce(c.category, 'other') AS col, reimb AS amt
            FROM kg LEFT JOIN cat c ON c.nat = kg.nat WHERE kg.g NOT IN (SELECT g FROM att)
            UNION ALL SELECT patient_id, CAST(substr(end_date, 1, 4) AS INT), 'hospital_' || lower(source), reimb FROM hosp
            UNION ALL SELECT patient_id, CAST(substr(date, 1, 4) AS INT), 'hospital_extras', amount FROM extras)
        SELECT patient_id, year, CAST(sum(amt) AS VARCHAR) AS total, {sums}
        FROM r GROUP BY ALL""").df()
    return ev


def reference_cost_exclusions(dlv: Delivery) -> dict[str, int]:
    """`cost_exclusions` of the manifest, recounted from the files (kept stays, visits and claims)."""
    con = duckdb.connect()
    stays = reference_events(dlv, con)["stays"]
    one = lambda q: con.sql(q).fetchall()[0][0]  # noqa: E731
    out = {
        "mco_not_valued": one("""SELECT count(*) FROM k_MCO k JOIN T_MCOaaVALO v ON v._year = k.year AND v.ETA_NUM = k.eta_num
                                 AND v.RSA_NUM = k.stay_id WHERE v.VALO IS NULL OR v.VALO = '0'"""),
        "mco_inter_establishment": int(((stays["source"] == "MCO") & ((stays["ENT_MOD"] == "0") | (stays["SOR_MOD"] == "0"))).sum()),
        "mco_typ_gen_rsa": one("SELECT count(*) FROM k_MCO WHERE typ = '1' AND year >= 2015"),
        "ace_not_valued": one("""SELECT count(*) FROM ace a JOIN T_MCOaaVALOACE v ON v._year = a._year AND v.ETA_NUM = a.ETA_NUM
                                 AND v.SEQ_NUM = a.SEQ_NUM WHERE a._rule IS NULL AND (v.valo IS NULL OR v.valo = '0')"""),
        "dcir_lines_attributed_to_stays": one("SELECT count(*) FROM att"),
    }
    for src, table, eta, ident, fac in BILLED:
        out[f"{src.lower()}_not_billable"] = one(f"""SELECT count(*) FROM k_{src} k JOIN {table} t ON t._year = k.year
            AND t.{eta} = k.eta_num AND t.{ident} = k.stay_id WHERE t.{fac} = '0'""")
    return out


def _canon(df: pd.DataFrame, cols: list[str]) -> list[tuple]:
    return sorted(map(tuple, df[cols].astype(str).fillna("").values.tolist()))


@pytest.mark.parametrize("which", ["default", "old"])
def test_cost_exclusions_match_reference_model(which, gen, delivery, gen_old, delivery_old):
    _, m = gen if which == "default" else gen_old
    dlv = delivery if which == "default" else delivery_old
    assert reference_cost_exclusions(dlv) == m["cost_exclusions"]


@pytest.mark.parametrize("which", ["default", "old"])
def test_events_match_reference_model(which, gen, delivery, gen_old, delivery_old):
    out, _ = gen if which == "default" else gen_old
    dlv = delivery if which == "default" else delivery_old
    _assert_events_match_reference(out, dlv)


def _assert_events_match_reference(out: Path, dlv: Delivery, m: dict | None = None) -> None:
    """Each truth event table equals the reference model's recomputation from the files (and, given
    the manifest, its event count)."""
    for name, df in reference_events(dlv).items():
        t = truth(out, name)
        cols = list(t.columns)
        df = df.copy()
        for c in cols:
            df[c] = df[c].astype(str).replace({"None": "", "nan": "", "<NA>": ""})
        assert _canon(df, cols) == _canon(t, cols), name
        assert m is None or m["events"][name] == len(t), name


def test_truth_is_sorted_and_rich(gen):
    out, m = gen
    for name in m["events"]:
        t = truth(out, name)
        assert len(t) > 0, name
    p = truth(out, "patients")
    assert list(p["patient_id"]) == sorted(p["patient_id"])
    assert m["patients"]["deaths"] > 0 and m["patients"]["incoherent_deaths"] > 0
    assert (p["incoherent_death"] == "1").sum() == m["patients"]["incoherent_deaths"]
    assert (p["death_date"] != "").sum() == m["patients"]["deaths"]
    dg = truth(out, "diagnoses")
    assert set(dg["source"]) == {"MCO", "SSR", "HAD", "ALD"}
    assert set(dg["diagnosis_type"]) == {"DP", "DR", "DAS", "MP", "AE", "ALD"}
    assert not dg["code"].str.contains(".", regex=False).any()
    assert set(truth(out, "procedures")["source"]) >= {"DCIR", "MCO"}
    assert set(truth(out, "costs_outpatient")["category"]) == {"consult", "drug", "biology", "device", "procedure", "transport",
                                                                "other"}
    h = truth(out, "costs_hospital_stays")
    assert set(h["source"]) == {"MCO", "ACE", "SSR", "HAD", "RIP"} and set(h["valuation"]) == {"PMSI", "DCIR"}
    assert set(truth(out, "costs_hospital_extras")["kind"]) == {"drug", "device"}
    assert set(truth(out, "stays")["source"]) == {"MCO", "SSR", "HAD", "RIP"}
    ce = m["cost_exclusions"]
    assert min(ce[k] for k in ("mco_not_valued", "mco_inter_establishment", "mco_typ_gen_rsa", "ace_not_valued",
                               "ssr_not_billable", "rip_not_billable", "dcir_lines_attributed_to_stays")) > 0, ce
    for name, keys in (("costs_outpatient", ["patient_id", "date", "PRS_NAT_REF"]),
                       ("costs_hospital_stays", ["patient_id", "start_date", "source", "eta_num", "stay_id"]),
                       ("costs_hospital_extras", ["patient_id", "date", "kind", "code"]), ("costs_patient_year", ["patient_id", "year"]),
                       ("stays", ["patient_id", "start_date", "source", "eta_num", "stay_id"])):
        rows = list(map(tuple, truth(out, name)[keys].values.tolist()))
        assert rows == sorted(rows), name
    py = truth(out, "costs_patient_year")
    assert (py[["hospital_mco", "hospital_ace", "hospital_ssr", "hospital_rip", "hospital_extras", "transport"]]
            .astype(float) > 0).any().all()
    s = truth(out, "stays")
    assert (s["SOR_MOD"] == "9").sum() == (truth(out, "deaths_by_source")["source"] == "PMSI").sum()
    # realistic densities: tens of DCIR lines per beneficiary-year, a minority in hospital
    nyears = YEARS[1] - YEARS[0] + 1
    assert 10 <= m["files"]["ER_PRS_F.csv"]["rows"] / (N * nyears) <= 60
    mco = s[s["source"] == "MCO"]
    share = mco.groupby(mco["end_date"].str[:4])["patient_id"].nunique().mean() / N
    assert 0.05 <= share <= 0.25


def test_events_within_life(gen):
    out, _ = gen
    p = truth(out, "patients").set_index("patient_id")
    birth = pd.to_datetime(p["birth_year"] + "-" + p["birth_month"].str.zfill(2) + "-01")
    death = pd.to_datetime(p["death_date"].replace("", None))
    for name, col in (("diagnoses", "date"), ("procedures", "date"), ("consults", "date"), ("biology", "date"),
                      ("devices", "date"), ("drug_dispensations", "date"), ("stays", "start_date"), ("stays", "end_date"),
                      ("costs_outpatient", "date"), ("costs_hospital_stays", "start_date"), ("costs_hospital_stays", "end_date"),
                      ("costs_hospital_extras", "date"), ("deaths_by_source", "death_date")):
        t = truth(out, name)
        d = pd.to_datetime(t[col])
        assert (d >= birth.reindex(t["patient_id"]).values).all(), (name, col)
        dd = death.reindex(t["patient_id"]).values
        assert ((d <= dd) | pd.isna(dd)).all(), (name, col)
        if name not in ("diagnoses",):
            assert (d.dt.year >= YEARS[0]).all() and (d.dt.year <= YEARS[1]).all(), (name, col)


# --------------------------------------------------------------------------------------------- variants, CLI
SHARED = Path("/work/shared/snds")


@pytest.mark.skipif(not (SHARED / "nomenclatures").is_dir(), reason="no shared/snds checkout")
def test_reference_extract_is_reproducible(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "snds_synth" / "reference" / "extract.py"), str(SHARED), "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for p in tmp_path.glob("*.csv"):
        assert p.read_bytes() == (ROOT / "snds_synth" / "reference" / p.name).read_bytes(), p.name
        assert p.stat().st_size < 500_000



def test_variant_iso_latin1_num_enq(gen_old, delivery_old):
    out, m = gen_old
    assert m["encoding"] == "latin-1" and m["id_column"] == "NUM_ENQ" and m["dcir_dates"] == "iso"
    raw = (out / "IR_PHA_R.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert "É" in raw.decode("latin-1")
    for f in ("ER_PRS_F.csv", "IR_BEN_R.csv", "IR_IMB_R.csv", "T_MCO16C.csv", "T_SSR17C.csv", "T_HAD18C.csv"):
        header = (out / f).read_bytes().split(b"\n", 1)[0].decode("latin-1").split(";")
        assert "NUM_ENQ" in header and "BEN_NIR_PSA" not in header and "NIR_ANO_17" not in header, f
    prs = delivery_old.frames["ER_PRS_F.csv"]
    assert prs["EXE_SOI_DTD"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert (prs.loc[prs["BEN_DCD_AME"] == "160001", "BEN_DCD_DTE"] == "1600-01-01").all()
    for fname, e in m["files"].items():
        assert delivery_old.faults[fname] == e["quarantine"], fname


def test_refuses_to_wipe_foreign_directory(tmp_path):
    d = tmp_path / "precious"
    d.mkdir()
    (d / "data.txt").write_text("keep me")
    with pytest.raises(GeneratorError):
        generate(d, n=60, seed=1, years=(2020, 2020), quiet=True)
    assert (d / "data.txt").read_text() == "keep me"


def test_cli_rewrites_previous_output(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "snds_synth", "--n", "60", "--seed", "5", "--years", "2020-2020", "--out", str(out), "--quiet"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (out / "stale.csv").write_text("x")
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and not (out / "stale.csv").exists()
    m = json.loads((out / "_truth" / "manifest.json").read_text())
    assert m["years"] == [2020, 2020] and m["n_beneficiaries"] == 60
    bad = subprocess.run(cmd[:-3] + ["--out", str(tmp_path), "--years", "2031-2032"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0


# --------------------------------------------------------------------------------------------- delivery variants
# A variant delivery is read back through its profile (Delivery: encoding, line ends, BOM, native layouts
# restored) and must give the truth's events by the same reference model as the native one.
NATIVE_GOLDEN = {  # sha256 of SHA256SUMS (every delivery file) and of the truth events, native, n=60 seed=11 2020
    "SHA256SUMS": "26176adfd97f9f413a3773ab1671f6557cd43d9666995232fe5741bb1c11cec7",
    "events": "c08137f4dc106ab404d0ad82af8ea764c96ceff889259d33092948e2efa9f8f7",
}
def _is_sas_date(x: str) -> bool:
    """A SAS datetime `ddMMMyyyy:HH:mm:ss` of a real calendar day."""
    try:
        return re.fullmatch(SAS, x) is not None and bool(dt.datetime.strptime(x.title(), "%d%b%Y:%H:%M:%S"))
    except ValueError:
        return False


SAS = r"[0-9]{2}(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[0-9]{4}:00:00:00"


def _events_digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted((out / "_truth" / "events").glob("*.csv")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _check_against_truth(out: Path, m: dict) -> Delivery:
    """Faults per file, events and cost exclusions of a delivery, recomputed from its files, equal the truth."""
    dlv = Delivery(out, m)
    for fname, e in m["files"].items():
        if e["table"] is not None:
            assert dlv.faults[fname] == e["quarantine"], fname
            assert dlv.nulled[fname] == e.get("nulled", {}), fname
            assert dlv.lines[fname] == e["rows"], fname
    _assert_events_match_reference(out, dlv, m)
    assert reference_cost_exclusions(dlv) == m["cost_exclusions"]
    p = truth(out, "patients")
    assert m["patients"] == {"n": len(p), "deaths": int((p["death_date"] != "").sum()),
                             "incoherent_deaths": int((p["incoherent_death"] == "1").sum())}
    return dlv


def test_native_output_unchanged(tmp_path):
    """The native delivery (no variant, or the `native` profile) is byte for byte what generator 1.2.0 wrote."""
    a, b = tmp_path / "a", tmp_path / "b"
    ma = generate(a, n=60, seed=11, years=(2020, 2020), quiet=True)
    mb = generate(b, n=60, seed=11, years=(2020, 2020), profile="native", variants="", quiet=True)
    assert hashlib.sha256((a / "SHA256SUMS").read_bytes()).hexdigest() == NATIVE_GOLDEN["SHA256SUMS"]
    assert _events_digest(a) == NATIVE_GOLDEN["events"]
    assert (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes() and _events_digest(b) == _events_digest(a)
    assert ma["profile"] == mb["profile"] == "native" and ma["variants"] == mb["variants"] == []
    assert ma == mb


@pytest.fixture(scope="module")
def gen_cnam(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_cnam") / "out"
    return out, generate(out, n=250, seed=11, years=(2019, 2020), profile="cnam_study", quiet=True)


def _lines(path: Path, enc: str) -> list[list[str]]:
    text = path.read_bytes().decode(enc)
    return [r.split(";") for r in text.split("\r\n")[:-1]]


def _col(path: Path, enc: str, col: str) -> list[str]:
    rows = _lines(path, enc)
    i = rows[0].index(col)
    return [r[i] for r in rows[1:] if len(r) == len(rows[0])]


def test_cnam_study_files(gen_cnam):
    out, m = gen_cnam
    assert m["profile"] == "cnam_study" and m["variants"] == sorted(
        ["num_enq", "sas_datetimes", "cp1252", "crlf_bom", "float_ints", "return_codes3", "decimal_comma", "extra_tables",
         "uncatalogued", "chaining_missing_codes", "admitted_before_window"])
    assert m["encoding"] == "cp1252" and m["id_column"] == "NUM_ENQ"
    files = {p.name for p in out.iterdir() if p.is_file()} - {"SHA256SUMS"}
    assert files == set(m["files"])
    for f in files:  # CRLF everywhere, no byte-order mark in Windows-1252
        raw = (out / f).read_bytes()
        assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"") and not raw.startswith(b"\xef\xbb\xbf"), f
    raw = (out / "IR_PHA_R.csv").read_bytes()
    assert b"\x92" in raw and b"\x96" in raw and b"\x80" in raw  # ’ – € in Windows-1252
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    labels = _col(out / "IR_PHA_R.csv", "cp1252", "PHA_GRS_NOM")
    assert any("é" in x for x in labels) and any("è" in x for x in labels) and any("’" in x for x in labels)
    enc = "cp1252"
    for f in ("ER_PRS_F.csv", "IR_BEN_R.csv", "IR_IMB_R.csv", "T_MCO19C.csv", "T_SSR20C.csv", "T_HAD19C.csv",
              "T_RIP20C.csv", "T_MCO19CSTC.csv", "T_MCO20FCSTC.csv", "ETUDE_CONSENTEMENT.csv"):
        h = _lines(out / f, enc)[0]
        assert "NUM_ENQ" in h and "BEN_NIR_PSA" not in h and "NIR_ANO_17" not in h, f
    # dates: SAS datetimes in every PMSI table with EXE_SOI_DTD/DTF, ddMMyyyy ENT_DAT/SOR_DAT, DCIR dd/MM/yyyy
    for f in ("T_SSR19C.csv", "T_HAD20C.csv", "T_RIP19C.csv", "T_MCO20CSTC.csv", "T_MCO20C.csv"):
        for c in ("EXE_SOI_DTD", "EXE_SOI_DTF"):
            v = _col(out / f, enc, c)
            bad = m["files"][f]["quarantine"].get(f"bad_date:{c}", 0) + \
                m["files"][f].get("nulled", {}).get(f"{c}|bad_date", 0)
            assert sum(not _is_sas_date(x) for x in v) == bad, (f, c)
        assert all(re.fullmatch(r"[0-9]{8}", x) for x in _col(out / f, enc, "SOR_DAT")), f
    assert all(re.fullmatch(r"[0-9]{2}/[0-9]{2}/[0-9]{4}", x) for x in _col(out / "IR_BEN_R.csv", enc, "BEN_DCD_DTE"))
    # integers as decimals, decimal commas, 3-character return codes, one-character chaining codes
    for f, c in (("ER_PRS_F.csv", "PRS_NAT_REF"), ("IR_BEN_R.csv", "BEN_SEX_COD"), ("T_MCO19C.csv", "SEJ_NUM"),
                 ("ER_PHA_F.csv", "PHA_PRS_C13"), ("T_MCO19FCSTC.csv", "ACT_NBR"), ("ER_ARO_F.csv", "DCT_ORD_NUM")):
        v = [x for x in _col(out / f, enc, c) if x]
        assert v and all(re.fullmatch(r"-?[0-9]+(\.0)?", x) for x in v) and any(x.endswith(".0") for x in v), (f, c)
    assert all(x.endswith(".0") for x in _col(out / "ER_PRS_F.csv", enc, "DCT_ORD_NUM") if re.fullmatch(r"[0-9.]+", x))
    amounts = _col(out / "ER_PRS_F.csv", enc, "BSE_REM_BSE")
    assert all(re.fullmatch(r"-?[0-9]+,[0-9]{2}", x) for x in amounts)
    assert all(re.fullmatch(r"-?[0-9]+,[0-9]{2}", x) for x in _col(out / "T_MCO19VALO.csv", enc, "MNT_TOT_AM"))
    b = [_lines(out / f"T_MCO{yy}B.csv", enc) for yy in ("19", "20")]
    b = [dict(zip(x[0], r)) for x in b for r in x[1:] if len(r) == len(x[0])]
    assert {r["GRG_RET"] for r in b} == {"000", "111"} and {r["GRC_RET"] for r in b} == {"000"}
    letters = [r["GHS_NUM"] for r in b if re.fullmatch(r"[A-Z][0-9]{2}", r["GHS_NUM"])]
    assert letters and all(r["GHS_NUM"] not in ("9999", "9999.0") for r in b if r["GHS_NUM"] in letters)
    assert {r["GHS_NUM"][:1] for r in b if r["GHS_NUM"]} - {"D"} <= set("0123456789")
    grg = _col(out / "T_SSR19B.csv", enc, "GRG_RET") + _col(out / "T_SSR20B.csv", enc, "GRG_RET")
    assert grg and set(grg) <= {"000", "111"}
    moi = _col(out / "T_SSR19B.csv", enc, "MOI_ANN") + _col(out / "T_SSR20B.csv", enc, "MOI_ANN")
    assert moi and all(re.fullmatch(r"(0[1-9]|1[0-2])(2018|2019|2020)", x) for x in moi)
    for f in ("T_MCO19C.csv", "T_HAD20C.csv", "T_MCO19CSTC.csv", "T_MCO19FCSTC.csv"):
        rows = _lines(out / f, enc)
        for i, c in enumerate(rows[0]):
            if c.endswith("_RET"):
                assert {r[i] for r in rows[1:] if len(r) == len(rows[0])} <= {"0", "1"}, (f, c)
    # the SSR chaining tables lack FHO_RET and PMS_RET (all years); the other C tables have them
    for yy in ("19", "20"):
        h = _lines(out / f"T_SSR{yy}C.csv", enc)[0]
        assert "FHO_RET" not in h and "PMS_RET" not in h and {"NIR_RET", "SEJ_RET", "DAT_RET"} <= set(h)
        assert {"FHO_RET", "PMS_RET"} <= set(_lines(out / f"T_MCO{yy}C.csv", enc)[0])


def test_cnam_study_extra_and_uncatalogued_tables(gen_cnam):
    out, m = gen_cnam
    enc = "cp1252"
    shared = Path("/work/shared/snds/schemas")
    for t, sfx in (("T_SSRaaCSARR", "CSARR"), ("T_HADaaA", "A"), ("T_MCOaaFCSTC", "FCSTC")):
        for yy in ("19", "20"):
            f = f"T_{t[2:5]}{yy}{sfx}.csv"
            assert m["files"][f]["table"] == t and m["files"][f]["cleaning"] == {}
            header = _lines(out / f, enc)[0]
            names = ["NIR_ANO_17" if h == "NUM_ENQ" else h for h in header]
            assert names == list(schemas.order(t)), f
            if (shared / f"{t}.json").is_file():
                assert names == [x["name"] for x in json.loads((shared / f"{t}.json").read_text())["fields"]], f
    aro = _lines(out / "ER_ARO_F.csv", enc)
    assert aro[0] == list(schemas.order("ER_ARO_F")) and len(aro) > 1
    dlv = Delivery(out, m)
    # keyed to existing stays, visits and claims
    for child, parent, key in (("T_SSRaaCSARR", "T_SSRaaB", ["_year", "ETA_NUM", "RHA_NUM", "RHS_NUM"]),
                               ("T_HADaaA", "T_HADaaB", ["_year", "ETA_NUM_EPMSI", "RHAD_NUM"]),
                               ("T_MCOaaFCSTC", "T_MCOaaCSTC", ["_year", "ETA_NUM", "SEQ_NUM"])):
        c, p_ = dlv.table(child), dlv.table(parent)
        assert len(c) > 0 and set(map(tuple, c[key].values)) <= set(map(tuple, p_[key].values)), child
    fc, cs = dlv.table("T_MCOaaFCSTC"), dlv.table("T_MCOaaCSTC")
    assert set(zip(fc["SEQ_NUM"], fc["NIR_ANO_17"])) <= set(zip(cs["SEQ_NUM"], cs["NIR_ANO_17"]))
    prs = dlv.frames["ER_PRS_F.csv"]
    assert set(map(tuple, dlv.frames["ER_ARO_F.csv"][DCIR_KEYS].values)) <= set(map(tuple, prs[DCIR_KEYS].values))
    # the uncatalogued file: listed, raw identifiers of the delivery's patients, free text
    u = m["files"]["ETUDE_CONSENTEMENT.csv"]
    assert u["table"] is None and u["catalogued"] is False and m["uncatalogued_files"] == ["ETUDE_CONSENTEMENT.csv"]
    rows = _lines(out / "ETUDE_CONSENTEMENT.csv", enc)
    assert rows[0][0] == "NUM_ENQ" and len(rows) - 1 == u["rows"] > 0
    assert {r[0] for r in rows[1:]} <= set(dlv.frames["IR_BEN_R.csv"]["BEN_NIR_PSA"])
    assert any("é" in ";".join(r) for r in rows[1:])


def test_cnam_study_truth(gen_cnam, tmp_path):
    """Every variant of cnam_study read back gives the truth; stays admitted in December of the year before
    are kept with events at admission; SSR stays whose only bad chaining code is absent are kept."""
    out, m = gen_cnam
    dlv = _check_against_truth(out, m)
    stays = truth(out, "stays")
    early = stays[stays["start_date"] < "2019-01-01"]
    assert set(early["source"]) == {"MCO", "SSR", "HAD"} and (early["start_date"].str[:7] == "2018-12").all()
    assert (early["end_date"].str[:4] == "2019").all()
    assert m["variant_counts"]["admitted_before_window"] == early["source"].value_counts().to_dict()
    dg = truth(out, "diagnoses")
    assert ((dg["date"].str[:7] == "2018-12") & (dg["year"] == "2019")).any()
    # the same world as the native delivery: same stays, but the chaining ones kept and the early ones moved
    nat = tmp_path / "native"
    mn = generate(nat, n=250, seed=11, years=(2019, 2020), quiet=True)
    ns = truth(nat, "stays")
    kept_more = m["variant_counts"]["chaining_missing_codes_kept_stays"]
    assert kept_more > 0 and len(stays) == len(ns) + kept_more
    assert m["cleaning_stays"]["pmsi_bad_chaining"]["SSR"] == mn["cleaning_stays"]["pmsi_bad_chaining"]["SSR"] - kept_more
    c = dlv.table("T_SSRaaC")
    assert (~(c[CHAINING["PMSI"]] == "0").all(axis=1)).sum() == m["cleaning"]["pmsi_bad_chaining"]["T_SSRaaC"]
    assert mn["cleaning"]["pmsi_bad_chaining"]["T_MCOaaC"] == m["cleaning"]["pmsi_bad_chaining"]["T_MCOaaC"]


def test_format_variants_keep_the_truth(gen, tmp_path):
    """Variants that only change how the files are written give the native truth, byte for byte."""
    out, m = gen
    v = tmp_path / "v"
    mv = generate(v, n=N, seed=SEED, years=YEARS, quiet=True,
                  variants="num_enq,sas_datetimes,latin1,crlf_bom,float_ints,return_codes3,decimal_comma,extra_tables,uncatalogued")
    assert _events_digest(v) == _events_digest(out)
    for k in ("cleaning", "cleaning_stays", "cost_exclusions", "events", "patients", "regularisation", "dotted_icd10"):
        assert mv[k] == m[k], k
    common = set(m["files"]) & set(mv["files"])
    assert common == set(m["files"]) and all(mv["files"][f] == m["files"][f] for f in common)
    raw = (v / "IR_PHA_R.csv").read_bytes()  # latin-1, CRLF, no byte-order mark
    assert not raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    labels = _col(v / "IR_PHA_R.csv", "latin-1", "PHA_GRS_NOM")
    assert any("é" in x for x in labels) and any("è" in x for x in labels)
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    _check_against_truth(v, mv)


def test_utf8_bom_iso_dates(tmp_path):
    out = tmp_path / "o"
    m = generate(out, n=80, seed=2, years=(2020, 2020), variants="crlf_bom,iso_dates", quiet=True)
    assert m["variants"] == ["crlf_bom", "iso_dates"] and m["dcir_dates"] == "iso" and m["profile"] is None
    for f in m["files"]:
        raw = (out / f).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") and raw.endswith(b"\r\n"), f
    dlv = Delivery(out, m)  # reads the BOM and CRLF, checks them in every file
    assert dlv.frames["ER_PRS_F.csv"]["FLX_DIS_DTD"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert dlv.frames["IR_BEN_R.csv"]["BEN_DCD_DTE"].isin(["1600-01-01"]).any()
    assert dlv.table("T_SSRaaC")["EXE_SOI_DTD"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()  # PMSI as native
    assert all(dlv.faults[f] == e["quarantine"] for f, e in m["files"].items())


@pytest.mark.parametrize("only", ["dcir_only", "pmsi_only", "referential_only"])
def test_source_subsets(only, tmp_path):
    out = tmp_path / only
    m = generate(out, n=150, seed=9, years=(2019, 2020), variants=only, quiet=True)
    tables = {e["table"] for e in m["files"].values()}
    fam = {"dcir_only": ("ER_", "IR_", "KI_", "REF_"), "pmsi_only": ("T_",), "referential_only": ("IR_", "KI_")}[only]
    assert all(t.startswith(fam) for t in tables)
    assert {"dcir_only": {"ER_PRS_F", "IR_BEN_R", "KI_CCI_R", "REF_ATC_DDD"}, "pmsi_only": {"T_MCOaaC", "T_RIPaaC", "T_MCOaaCSTC"},
            "referential_only": {"IR_BEN_R", "IR_IMB_R", "IR_PHA_R", "KI_ECD_R"}}[only] <= tables
    _check_against_truth(out, m)
    ds = set(truth(out, "deaths_by_source")["source"])
    dg = set(truth(out, "diagnoses")["source"])
    h = truth(out, "costs_hospital_stays")
    if only == "dcir_only":
        assert ds == {"IR_BEN_R", "DCIR", "KI_CCI_R"} and dg == {"ALD"} and len(truth(out, "stays")) == 0 and len(h) == 0
        assert "other" in set(truth(out, "costs_outpatient")["category"])  # the clinic lines: no stay to match
        assert m["cost_exclusions"]["dcir_lines_attributed_to_stays"] == 0 and m["patients"]["n"] == 150
        assert sum(m["cleaning_stays"]["pmsi_bad_chaining"].values()) == 0
    elif only == "pmsi_only":
        assert ds == {"PMSI"} and dg == {"MCO", "SSR", "HAD"} and set(h["valuation"]) == {"PMSI"}
        p = truth(out, "patients")
        assert set(p["patient_id"]) == set(truth(out, "stays")["patient_id"]) and (p["sex"] == "").all()
        assert len(truth(out, "costs_outpatient")) == 0 and m["regularisation"] == {"full_pairs": 0, "partial_pairs": 0}
        assert m["cleaning"]["dcir_regularisation"] == {}
    else:
        assert ds == {"IR_BEN_R", "KI_CCI_R"} and dg == {"ALD"} and (truth(out, "patients")["last_contact_date"] == "").all()
        for name in ("stays", "consults", "drug_dispensations", "costs_outpatient", "costs_patient_year"):
            assert len(truth(out, name)) == 0, name


def test_variant_determinism_and_refusals(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, n=60, seed=4, years=(2020, 2021), profile="cnam_study", quiet=True)
    generate(b, n=60, seed=4, years=(2020, 2021), variants=",".join(PROFILE_CNAM), quiet=True)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for p in a.iterdir():
        if p.is_file():
            assert p.read_bytes() == (b / p.name).read_bytes(), p.name
    for kw, words in (({"variants": "num_enq,nope"}, ["nope"]), ({"variants": "dcir_only,pmsi_only"}, ["dcir_only", "pmsi_only"]),
                      ({"variants": "latin1,cp1252"}, ["latin1", "cp1252"]), ({"variants": "bom,cp1252"}, ["bom", "cp1252"]),
                      ({"variants": "cp1252", "encoding": "latin-1"}, ["latin1", "cp1252"]),
                      ({"variants": "sas_datetimes,referential_only"}, ["sas_datetimes", "referential_only"]),
                      ({"profile": "nope"}, ["nope"])):
        with pytest.raises(GeneratorError) as err:
            generate(tmp_path / "x", n=60, seed=1, years=(2020, 2020), quiet=True, **kw)
        assert all(w in str(err.value) for w in words), err.value
        assert not (tmp_path / "x").exists()


PROFILE_CNAM = ["num_enq", "sas_datetimes", "cp1252", "crlf_bom", "float_ints", "return_codes3", "decimal_comma", "extra_tables",
                "uncatalogued", "chaining_missing_codes", "admitted_before_window"]


def test_cli_profile_and_variants(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "snds_synth", "--n", "50", "--seed", "3", "--years", "2020-2020", "--out", str(out), "--quiet",
           "--profile", "cnam_study", "--variants", "dcir_only"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "sas_datetimes + dcir_only" in r.stderr
    r = subprocess.run(cmd[:-2] + ["--variants", "pmsi_only"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "_truth" / "manifest.json").read_text())
    assert m["profile"] == "cnam_study" and "pmsi_only" in m["variants"] and m["sources"] == ["PMSI"]
    assert not any(f.startswith(("ER_", "IR_", "KI_")) for f in m["files"])


def test_pmsi_only_encoding_has_free_text(tmp_path):
    """latin1 / cp1252 on a PMSI-only delivery: the MCO establishment table T_MCOaaE carries accented names."""
    out = tmp_path / "p"
    m = generate(out, n=50, seed=1, years=(2020, 2020), variants="pmsi_only,cp1252", quiet=True)
    assert m["files"]["T_MCO20E.csv"]["table"] == "T_MCOaaE"
    raw = (out / "T_MCO20E.csv").read_bytes()
    assert b"\x92" in raw and b"\x96" in raw and "é".encode("cp1252") in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    rows = [r.split(";") for r in raw.decode("cp1252").split("\n")[:-1]]
    assert rows[0] == list(schemas.order("T_MCOaaE"))
    b = Delivery(out, m).table("T_MCOaaB")
    assert set(b["ETA_NUM"]) <= {r[rows[0].index("ETA_NUM")] for r in rows[1:]}
