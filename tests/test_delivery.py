"""Delivery checks made before any data is read: file -> table, header against the schema."""

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
    with pytest.raises(DeliveryError, match="ER_XYZ_F.csv: unknown table"):
        cfg.identify(tmp_path / "ER_XYZ_F.csv")


def test_header_checked_against_schema(cfg, tmp_path):
    ok = cfg.describe(_write(tmp_path, "ER_PRS_F.csv", f"BEN_NIR_PSA;EXE_SOI_DTD;{PRS_KEYS}"))
    assert [c.name for c in ok.columns][:2] == ["BEN_NIR_PSA", "EXE_SOI_DTD"]
    assert ok.columns[0].identifier and ok.columns[0].kind == "string"
    assert ok.columns[1].kind == "date" and ok.columns[1].formats == ("dd/MM/yyyy", "yyyy-MM-dd")

    with pytest.raises(DeliveryError, match=r"ER_PRS_F.csv: header does not match.*'BOGUS' \(position 2\)"):
        cfg.describe(_write(tmp_path, "ER_PRS_F.csv", f"BEN_NIR_PSA;BOGUS;{PRS_KEYS}"))
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
    assert kinds["EXE_SOI_DTD"] == ("date", ("ddMMMyyyy:HH:mm:ss",))
    assert kinds["ENT_DAT"] == ("date", ("ddMMyyyy",))
    assert kinds["SOR_MOI"] == ("month", ())
    assert kinds["NIR_RET"] == ("boolean", ())
    assert f.partition == "T_MCOaaC/year=2019"
    assert [c.name for c in f.identifier_columns] == ["NIR_ANO_17"]


def test_num_enq_profile(tmp_path):
    cfg = IngestConfig.load(patient_id_column="NUM_ENQ")
    f = cfg.describe(_write(tmp_path, "T_MCO19C.csv", "ETA_NUM;RSA_NUM;NUM_ENQ"))
    assert [c.name for c in f.columns] == ["ETA_NUM", "RSA_NUM", "NIR_ANO_17"]
    g = cfg.describe(_write(tmp_path, "IR_BEN_R.csv", "NUM_ENQ;BEN_RNG_GEM"))
    assert [(c.name, c.delivered_name) for c in g.columns] == [("BEN_NIR_PSA", "NUM_ENQ"), ("BEN_RNG_GEM", "BEN_RNG_GEM")]


def test_scan_requires_tables_and_rejects_duplicates(cfg, tmp_path):
    _write(tmp_path, "ER_PRS_F.csv", f"BEN_NIR_PSA;{PRS_KEYS}")
    (tmp_path / "_truth").mkdir()
    (tmp_path / ".hidden").write_text("x")
    with pytest.raises(DeliveryError, match="required table.*IR_BEN_R"):
        cfg.scan(tmp_path)
    _write(tmp_path, "IR_BEN_R.csv", "BEN_NIR_PSA;BEN_RNG_GEM")
    assert [f.table for f in cfg.scan(tmp_path)] == ["ER_PRS_F", "IR_BEN_R"]
    _write(tmp_path, "notes.txt", "hello")  # not a CSV file: ignored, with a warning
    assert [f.table for f in cfg.scan(tmp_path)] == ["ER_PRS_F", "IR_BEN_R"]
    _write(tmp_path, "ER_XYZ_F.csv", "A;B")
    with pytest.raises(DeliveryError, match="ER_XYZ_F.csv: unknown table"):
        cfg.scan(tmp_path)
    (tmp_path / "ER_XYZ_F.csv").unlink()
    _write(tmp_path, "ir_ben_r.CSV", "BEN_NIR_PSA;BEN_RNG_GEM")
    with pytest.raises(DeliveryError, match="also delivered"):
        cfg.scan(tmp_path)
    with pytest.raises(DeliveryError, match="not found"):
        cfg.scan(tmp_path / "nope")


def test_config_errors_name_the_key(tmp_path):
    raw = yaml.safe_load(open(IngestConfig.load.__globals__["CONFIG_DIR"] / "ingest.yaml"))
    raw["delivery"]["date_formats"] = ["MM-dd-yy"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(DeliveryError, match="date_formats: unsupported"):
        IngestConfig.load(path)
    with pytest.raises(DeliveryError, match="encoding"):
        IngestConfig.load(encoding="cp1252")


def test_identifier_columns_per_table(tmp_path):
    """A table may declare raw identifiers of its own: typed as strings and pseudonymised."""
    import yaml

    from conftest import PROJECT_ROOT

    raw = yaml.safe_load((PROJECT_ROOT / "config" / "ingest.yaml").read_text())
    raw["tables"]["IR_IMB_R"]["identifier_columns"] = ["IMB_ALD_NUM"]
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
