"""Delivery checks made before any data is read: file -> table (the whole SNDS catalogue), header
against the schema, the profile's policies (uncatalogued files, patient column), rule columns."""

from __future__ import annotations

import pytest
import yaml

from spark_jobs.delivery import DeliveryError, IngestConfig

PRS_KEYS = "DCT_ORD_NUM;FLX_DIS_DTD;FLX_EMT_NUM;FLX_EMT_ORD;FLX_EMT_TYP;FLX_TRT_DTD;ORG_CLE_NUM;PRS_ORD_NUM;REM_TYP_AFF"


def _write(directory, name, header, lines=(), encoding="utf-8"):
    path = directory / name
    path.write_bytes((header + "\n" + "".join(f"{line}\n" for line in lines)).encode(encoding))
    return path


@pytest.fixture
def cfg():
    return IngestConfig.load()


def test_identify_tables_and_years(cfg, tmp_path):
    assert cfg.identify(tmp_path / "ER_PRS_F.csv") == ("ER_PRS_F", None)
    assert cfg.identify(tmp_path / "T_MCO19B.csv") == ("T_MCOaaB", 2019)
    assert cfg.identify(tmp_path / "t_ssr08ccam.CSV") == ("T_SSRaaCCAM", 2008)
    assert cfg.identify(tmp_path / "T_MCO21UM.csv") == ("T_MCOaaUM", 2021)
    # Catalogued tables the model does not use are known tables too (all 188 HDH schemas).
    assert cfg.identify(tmp_path / "T_SSR19CSARR.csv") == ("T_SSRaaCSARR", 2019)
    assert cfg.identify(tmp_path / "T_HAD19A.csv") == ("T_HADaaA", 2019)
    assert cfg.identify(tmp_path / "T_MCO19FCSTC.csv") == ("T_MCOaaFCSTC", 2019)
    assert cfg.identify(tmp_path / "T_MCO19FC.csv") == ("T_MCOaaFC", 2019)
    assert cfg.identify(tmp_path / "ER_ARO_F.csv") == ("ER_ARO_F", None)
    assert cfg.identify(tmp_path / "CT_IDE_2019_GN.csv") == ("CT_IDE_AAAA_GN", 2019)
    assert cfg.identify(tmp_path / "ER_XYZ_F.csv") is None


def test_every_hdh_schema_is_catalogued(cfg):
    from conftest import PROJECT_ROOT

    names = {p.stem for p in (PROJECT_ROOT / "config" / "schemas" / "snds").glob("*.json")}
    assert len(names) >= 188 and names <= set(cfg.tables)
    assert all(cfg.tables[t]["yearly"] == ("aa" in t or "AAAA" in t) for t in names)
    assert not any(spec.get("required") for spec in cfg.tables.values())  # partial extracts are deliveries


def test_header_checked_against_schema(cfg, tmp_path):
    ok = cfg.describe(_write(tmp_path, "ER_PRS_F.csv", f"BEN_NIR_PSA;EXE_SOI_DTD;{PRS_KEYS}"))
    assert [c.name for c in ok.columns][:2] == ["BEN_NIR_PSA", "EXE_SOI_DTD"]
    assert ok.columns[0].identifier and ok.columns[0].kind == "string"
    assert ok.columns[1].kind == "date" and ok.columns[1].formats == ("dd/MM/yyyy", "yyyy-MM-dd")

    # A column the schema does not have is kept as text and reported; missing schema columns are listed.
    extra = cfg.describe(_write(tmp_path, "ER_PRS_F.csv", f"BEN_NIR_PSA;BOGUS;{PRS_KEYS}"))
    assert extra.extra_columns == ("BOGUS",) and {c.name: c.kind for c in extra.columns}["BOGUS"] == "string"
    assert extra.columns_in_schema_order[-1].name == "BOGUS" and "EXE_SOI_DTD" in extra.missing_columns
    # Column names in another case are the schema's columns.
    low = cfg.describe(_write(tmp_path, "ER_PRS_F.csv", f"ben_nir_psa;{PRS_KEYS}"))
    assert low.columns[0].name == "BEN_NIR_PSA" and low.columns[0].identifier
    with pytest.raises(DeliveryError, match="appears twice"):
        cfg.describe(_write(tmp_path, "ER_PRS_F.csv", f"BEN_NIR_PSA;BEN_NIR_PSA;{PRS_KEYS}"))
    with pytest.raises(DeliveryError, match="key columns missing: DCT_ORD_NUM"):
        cfg.describe(_write(tmp_path, "ER_PRS_F.csv", "BEN_NIR_PSA;" + PRS_KEYS.split(";", 1)[1]))
    with pytest.raises(DeliveryError, match="empty file"):
        cfg.describe(_write(tmp_path, "IR_BEN_R.csv", ""))


def test_pmsi_formats_and_type_overrides(cfg, tmp_path):
    f = cfg.describe(_write(tmp_path, "T_MCO19C.csv", "ETA_NUM;RSA_NUM;NIR_ANO_17;EXE_SOI_DTD;ENT_DAT;SOR_MOI;NIR_RET"))
    kinds = {c.name: (c.kind, c.formats) for c in f.columns}
    assert kinds["ETA_NUM"] == ("string", ())  # integer in the schema, string by override (FINESS)
    # The schema's layout first, then the profile's.
    assert kinds["EXE_SOI_DTD"] == ("date", ("ddMMMyyyy:HH:mm:ss", "dd/MM/yyyy", "yyyy-MM-dd"))
    assert kinds["ENT_DAT"] == ("date", ("ddMMyyyy", "dd/MM/yyyy", "yyyy-MM-dd"))
    assert kinds["SOR_MOI"] == ("month", ())
    assert kinds["NIR_RET"] == ("code", ())  # boolean in the HDH schema; real files carry codes
    assert f.partition == "T_MCOaaC/year=2019"
    assert [c.name for c in f.identifier_columns] == ["NIR_ANO_17"]


def test_num_enq_profile(tmp_path):
    cfg = IngestConfig.load(patient_id_column="NUM_ENQ")
    f = cfg.describe(_write(tmp_path, "T_MCO19C.csv", "ETA_NUM;RSA_NUM;NUM_ENQ"))
    assert [c.name for c in f.columns] == ["ETA_NUM", "RSA_NUM", "NIR_ANO_17"]
    g = cfg.describe(_write(tmp_path, "IR_BEN_R.csv", "NUM_ENQ;BEN_RNG_GEM"))
    assert [(c.name, c.delivered_name) for c in g.columns] == [("BEN_NIR_PSA", "NUM_ENQ"), ("BEN_RNG_GEM", "BEN_RNG_GEM")]


def test_scan_partial_deliveries_uncatalogued_files_and_duplicates(cfg, tmp_path):
    with pytest.raises(DeliveryError, match="not found"):
        cfg.scan(tmp_path / "nope")
    (tmp_path / "_truth").mkdir()
    (tmp_path / ".hidden").write_text("x")
    _write(tmp_path, "ETUDE_NOTES.csv", "BEN_NIR_PSA;NOTE")
    with pytest.raises(DeliveryError, match="no file of a catalogued SNDS table"):
        cfg.scan(tmp_path)
    _write(tmp_path, "ER_PRS_F.csv", f"BEN_NIR_PSA;{PRS_KEYS}")  # a DCIR-only delivery is a delivery
    files = cfg.scan(tmp_path)
    assert [(f.table, f.catalogued) for f in files] == [("ER_PRS_F", True), ("ETUDE_NOTES", False)]
    notes = files[1]
    assert [(c.name, c.kind, c.identifier) for c in notes.columns] == [("BEN_NIR_PSA", "string", True),
                                                                        ("NOTE", "string", False)]
    _write(tmp_path, "IR_BEN_R.csv", "BEN_NIR_PSA;BEN_RNG_GEM")
    _write(tmp_path, "notes.txt", "hello")  # not a CSV file: ignored, with a warning
    assert [f.table for f in cfg.scan(tmp_path)] == ["ER_PRS_F", "ETUDE_NOTES", "IR_BEN_R"]
    skip = IngestConfig.load(profile=_profile(tmp_path, uncatalogued="skip"))
    assert [f.table for f in skip.scan(tmp_path)] == ["ER_PRS_F", "IR_BEN_R"]
    assert skip.skipped(tmp_path) == ["ETUDE_NOTES.csv"]
    strict = IngestConfig.load(profile=_profile(tmp_path, uncatalogued="error"))
    with pytest.raises(DeliveryError, match="ETUDE_NOTES.csv: unknown table.*uncatalogued: error"):
        strict.scan(tmp_path)
    (tmp_path / "ETUDE_NOTES.csv").unlink()
    _write(tmp_path, "ir_ben_r.CSV", "BEN_NIR_PSA;BEN_RNG_GEM")
    with pytest.raises(DeliveryError, match="also delivered"):
        cfg.scan(tmp_path)


def _profile(tmp_path, **settings):
    from spark_jobs.profiles import load_profile

    raw = yaml.safe_load(open(load_profile("native").source))
    raw.update(settings)
    path = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_profile_errors_name_the_key(tmp_path):
    with pytest.raises(DeliveryError, match="unsupported date layout"):
        IngestConfig.load(profile=_profile(tmp_path, date_formats=["MM-dd-yy"]))
    with pytest.raises(DeliveryError, match="encoding must be one of"):
        IngestConfig.load(encoding="utf-16")
    with pytest.raises(DeliveryError, match="unknown key.*separater"):
        IngestConfig.load(profile=_profile(tmp_path, separater=","))
    with pytest.raises(DeliveryError, match="unknown profile 'nope'.*native"):
        IngestConfig.load(profile="nope")
    assert IngestConfig.load(encoding="windows-1252").encoding == "cp1252"
    assert IngestConfig.load(profile="cnam_study").patient_id_column == "NUM_ENQ"


def test_rule_columns_cover_every_column_the_cleaning_rules_name(cfg):
    """What config/clean.yaml keys, sums, groups or filters on must be readable, or the row is
    quarantined: every such column is a rule column (config/ingest.yaml rule_columns) where it exists."""
    from conftest import PROJECT_ROOT

    clean = yaml.safe_load((PROJECT_ROOT / "config" / "clean.yaml").read_text())["dcir"]
    needed = {"ER_PRS_F": {*clean["join_keys"], *clean["regularisation"]["group_by"],
                           clean["regularisation"]["quantity"], *clean["regularisation"]["summed"]}}
    for rule, spec in clean["line_rules"].items():
        table = spec.get("reads", "ER_PRS_F")
        needed.setdefault(table, set()).update(k for k in spec if k.isupper())
    for table, spec in clean["detail_tables"].items():
        needed.setdefault(table, set()).update(clean["join_keys"])
        if "quantity" in spec:
            needed[table].add(spec["quantity"])
    for table in needed:
        needed[table] |= {c for c in clean["amount_columns"] if c in {f["name"] for f in cfg.schema(table)["fields"]}}
    for table, columns in needed.items():
        fields = {f["name"] for f in cfg.schema(table)["fields"]}
        loose = sorted(c for c in columns if c in fields and not cfg.is_identifier(table, c)
                       and not cfg.is_rule_column(table, c))
        assert not loose, f"{table}: {loose} are used by config/clean.yaml but not rule_columns"


def test_identifier_columns_per_table(tmp_path):
    """A table may declare raw identifiers of its own: typed as strings and pseudonymised."""
    import yaml

    from conftest import PROJECT_ROOT

    raw = yaml.safe_load((PROJECT_ROOT / "config" / "ingest.yaml").read_text())
    raw["tables"]["IR_IMB_R"] = {"identifier_columns": ["IMB_ALD_NUM"]}
    path = tmp_path / "ingest.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = IngestConfig.load(path)
    delivery = tmp_path / "d"
    delivery.mkdir()
    (delivery / "IR_IMB_R.csv").write_text("BEN_NIR_PSA;BEN_RNG_GEM;IMB_ALD_NUM;MED_MTF_COD\nA;1;7;C50\n")
    f = cfg.describe(delivery / "IR_IMB_R.csv")
    assert [c.name for c in f.identifier_columns] == ["BEN_NIR_PSA", "IMB_ALD_NUM"]
    assert {c.name: c.kind for c in f.columns}["IMB_ALD_NUM"] == "string"
    assert not cfg.is_identifier("ER_PRS_F", "IMB_ALD_NUM")
