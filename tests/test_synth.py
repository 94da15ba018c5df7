"""Tests of the synthetic SNDS delivery generator (snds_synth).

The delivery is read back like an ingest would (split on `;`, typed by the table schemas), the planted
anomalies are counted independently and compared with the truth manifest, and a small reference
implementation of the event definitions of docs/synthetic-data.md (DuckDB over the parsed files) must
reproduce the truth event tables exactly.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from snds_synth import GeneratorError, generate
from snds_synth import schemas

ROOT = Path(__file__).resolve().parent.parent
N, SEED, YEARS = 300, 7, (2019, 2021)
ID17 = re.compile(r"^[0-9A-Z]{17}$")
PLACEHOLDERS = {"xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXD"}
CONSULT_NATURES = (1098, 1110, 1111, 1112, 1113, 1114, 1115, 1191, 1192)
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


class Delivery:
    """A delivery read back: per file, the valid rows (typed as text) and the faults found."""

    def __init__(self, out: Path, manifest: dict):
        self.out, self.m = out, manifest
        self.enc = "latin-1" if manifest["encoding"] == "latin-1" else "utf-8"
        self.frames: dict[str, pd.DataFrame] = {}
        self.faults: dict[str, dict[str, int]] = {}
        self.lines: dict[str, int] = {}
        for fname, entry in manifest["files"].items():
            self._read(fname, entry["table"])

    def _read(self, fname: str, table: str):
        text = (self.out / fname).read_bytes().decode(self.enc)
        assert "\r" not in text and '"' not in text, fname
        assert text.endswith("\n"), fname
        rows = text.split("\n")[:-1]
        header = rows[0].split(";")
        names = ["BEN_NIR_PSA" if (h == "NUM_ENQ" and "BEN_NIR_PSA" in schemas.fields(table)) else
                 "NIR_ANO_17" if h == "NUM_ENQ" else h for h in header]
        assert names == [c for c in schemas.order(table) if c in names], f"{fname}: columns not in schema order"
        faults: dict[str, int] = {}
        good = []
        for line in rows[1:]:
            f = line.split(";")
            if len(f) != len(names):
                faults["wrong_column_count"] = faults.get("wrong_column_count", 0) + 1
                continue
            bad = None
            for name, v in zip(names, f):
                if v != "" and not valid(table, name, v, self.m):
                    bad = f"bad_{schemas.reason_kind(table, name)}:{name}"
                    break
            if bad:
                faults[bad] = faults.get(bad, 0) + 1
                continue
            good.append(f)
        self.lines[fname] = len(rows) - 1
        self.faults[fname] = faults
        df = pd.DataFrame(good, columns=names, dtype=object)
        self.frames[fname] = df.replace("", None)

    def table(self, table: str) -> pd.DataFrame:
        """All valid rows of a table (PMSI: every year, with a `_year` column)."""
        parts = []
        for fname, e in self.m["files"].items():
            if e["table"] == table:
                df = self.frames[fname].copy()
                df["_year"] = e["year"]
                parts.append(df)
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
        expected |= {f"T_MCO{yy}{s}.csv" for s in ("B", "C", "D", "A", "UM", "MED")}
        expected |= {f"T_SSR{yy}{s}.csv" for s in ("B", "C", "D", "CCAM")}
        expected |= {f"T_HAD{yy}{s}.csv" for s in ("B", "C", "D")}
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
    q = {f: e["quarantine"] for f, e in m["files"].items()}
    assert q["ER_PRS_F.csv"].get("wrong_column_count") and q["ER_PRS_F.csv"].get("bad_date:EXE_SOI_DTD")
    assert q["ER_PRS_F.csv"].get("bad_number:PRS_PAI_MNT") and q["ER_PHA_F.csv"].get("bad_integer:PHA_ACT_QSN")
    assert q["ER_PHA_F.csv"].get("wrong_column_count")
    for y in range(YEARS[0], YEARS[1] + 1):
        yy = f"{y % 100:02d}"
        assert q[f"T_MCO{yy}B.csv"].get("wrong_column_count")
        assert set(q[f"T_MCO{yy}C.csv"]) == {"wrong_column_count", "bad_date:EXE_SOI_DTD", "bad_date:ENT_DAT"}
    assert sum(q[f].get("bad_date:ENT_DAT", 0) for f in q if f.startswith("T_SSR")) > 0


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
            subs = {"MCO": ("D", "A", "UM", "MED"), "SSR": ("D", "CCAM"), "HAD": ("D",)}[src]
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


# --------------------------------------------------------------------------------------------- reference model
def _iso(s: pd.Series, layout: str) -> pd.Series:
    if layout == "dmy":
        return s.str[6:10] + "-" + s.str[3:5] + "-" + s.str[0:2]
    if layout == "dmy8":
        return s.str[4:8] + "-" + s.str[2:4] + "-" + s.str[0:2]
    if layout == "sas":
        return s.str[5:9] + "-" + s.str[2:5].map(lambda x: f"{MONTHS[x]:02d}") + "-" + s.str[0:2]
    return s


def reference_events(dlv: Delivery) -> dict[str, pd.DataFrame]:
    """The event definitions of docs/synthetic-data.md, computed from the delivered files."""
    m = dlv.m
    lay = "dmy" if m["dcir_dates"] == "dmy" else "iso"
    con = duckdb.connect()
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
        SELECT g, any_value(BEN_NIR_PSA) AS pid, any_value(EXE_SOI_DTD) AS date, any_value(PRS_NAT_REF) AS nat,
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
    cat = {1098: "consult", 1110: "consult", 1111: "consult", 1112: "consult", 1113: "consult", 1114: "consult",
           1115: "consult", 1191: "consult", 1192: "consult", 1321: "procedure", 1322: "procedure", 1324: "procedure",
           1351: "procedure", 1352: "procedure", 3311: "drug", 3313: "drug", 3317: "drug", 3341: "drug", 3211: "biology",
           3512: "device", 3514: "device", 3515: "device", 3521: "device"}
    con.register("cat", pd.DataFrame({"nat": [str(k) for k in cat], "category": list(cat.values())}))
    ev["costs_dcir"] = con.sql("""
        SELECT pid AS patient_id, date, coalesce(c.category, 'other') AS category, CAST(sum(paid) AS VARCHAR) AS paid,
               CAST(sum(base) AS VARCHAR) AS base, CAST(sum(reimb) AS VARCHAR) AS reimbursed
        FROM kg LEFT JOIN cat c ON c.nat = kg.nat GROUP BY ALL""").df()
    ev["cmuc"] = con.sql("SELECT DISTINCT pid AS patient_id, CAST(substr(date, 1, 4) AS INT) AS year FROM kg WHERE cmu = '1'").df()

    # PMSI: B x C, cleaned
    geo = "(" + ",".join(f"'{g}'" for g in m["geographic_finess"]) + ")"
    stays, diags, procs = [], [], []
    for src, key, ghm_col, err in (("MCO", ["ETA_NUM", "RSA_NUM"], "GRG_GHM", "90"), ("SSR", ["ETA_NUM", "RHA_NUM"], "GRG_GME", "90"),
                                   ("HAD", ["ETA_NUM_EPMSI", "RHAD_NUM"], "ETA_GRP_GHPC", "99")):
        b = dlv.table(f"T_{src}aaB")
        c = dlv.table(f"T_{src}aaC")
        if src == "MCO":
            c["start"], c["end"] = _iso(c["EXE_SOI_DTD"], "sas"), _iso(c["EXE_SOI_DTF"], "sas")
        elif src == "SSR":
            c["start"], c["end"] = _iso(c["ENT_DAT"], "dmy8"), _iso(c["SOR_DAT"], "dmy8")
            b = b[b["RHS_NUM"] == "1"]
        else:
            c["start"], c["end"] = c["EXE_SOI_DTD"], c["EXE_SOI_DTF"]
        con.register("b", b)
        con.register("c", c)
        on = " AND ".join(f"b.{k} = c.{k}" for k in key)
        extra = " AND b.GHS_NUM IS DISTINCT FROM '9999'" if src == "MCO" else ""
        con.sql(f"""CREATE OR REPLACE TABLE k_{src} AS
            SELECT c.NIR_ANO_17 AS patient_id, '{src}' AS source, c.{key[0]} AS eta_num, c.{key[1]} AS stay_id,
                   c.start AS start_date, c."end" AS end_date, b.ENT_MOD, b.SOR_MOD, b.{ghm_col} AS ghm, c._year AS year
            FROM b JOIN c ON {on}
            WHERE c.NIR_RET = '0' AND c.NAI_RET = '0' AND c.SEX_RET = '0' AND c.SEJ_RET = '0' AND c.FHO_RET = '0'
              AND c.PMS_RET = '0' AND c.DAT_RET = '0' AND c.NIR_ANO_17 IS NOT NULL
              AND c.NIR_ANO_17 NOT IN ('xxxxxxxxxxxxxxxxx', 'XXXXXXXXXXXXXXXXD')
              AND NOT starts_with(b.{ghm_col}, '{err}') {extra}
              AND NOT (c.{key[0]} IN {geo} AND c._year <= 2017)""")
        stays.append(con.sql(f"SELECT * EXCLUDE (year) FROM k_{src}").df())
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
    ev["stays"] = pd.concat(stays, ignore_index=True)
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
    pat["death_date"] = pat["patient_id"].map(agg["max"]).dt.strftime("%Y-%m-%d").fillna("")
    incoherent = ((agg["max"] - agg["min"]).dt.days >= 7).astype(int).astype(str)
    pat["incoherent_death"] = pat["patient_id"].map(incoherent).fillna("0")
    pat["last_contact_date"] = pat["patient_id"].map(last).fillna("")
    ev["patients"] = pat
    return ev


def _canon(df: pd.DataFrame, cols: list[str]) -> list[tuple]:
    return sorted(map(tuple, df[cols].astype(str).fillna("").values.tolist()))


@pytest.mark.parametrize("which", ["default", "old"])
def test_events_match_reference_model(which, gen, delivery, gen_old, delivery_old):
    out, _ = gen if which == "default" else gen_old
    dlv = delivery if which == "default" else delivery_old
    ref = reference_events(dlv)
    for name, df in ref.items():
        t = truth(out, name)
        cols = list(t.columns)
        df = df.copy()
        for c in cols:
            df[c] = df[c].astype(str).replace({"None": "", "nan": "", "<NA>": ""})
        assert _canon(df, cols) == _canon(t, cols), name


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
    assert set(truth(out, "costs_dcir")["category"]) == {"consult", "drug", "biology", "device", "procedure", "other"}
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
                      ("costs_dcir", "date"), ("deaths_by_source", "death_date")):
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
