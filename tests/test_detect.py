"""Delivery profile detection (spark_jobs.detect): each setting from small hand-written deliveries, a
generated delivery whose writing options are known, the HDH sample files, the evidence section (no
data value may leak into it) and the `make detect` command line.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import subprocess
import sys

import pytest
import yaml

from conftest import PROJECT_ROOT, SAMPLES
from spark_jobs.delivery import DeliveryError, IngestConfig
from spark_jobs.detect import SAMPLE_BYTES, detect_profile
from spark_jobs.profiles import load_profile, profile_from_dict, validate

# Patient identifiers of the hand-written deliveries: none may appear in a detected profile.
IDS = ["Qx7PatientAAAAAA1", "Qx7PatientBBBBBB2", "Qx7PatientCCCCCC3"]


@pytest.fixture(scope="module")
def cfg():
    return IngestConfig.load()


def write(directory, files: dict[str, list[list[str]]], sep=";", encoding="utf-8", newline="\n", bom=False):
    """A delivery: one file per name, rows (header first) joined with `sep`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        data = newline.join(sep.join(r) for r in rows) + newline
        (directory / name).write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode(encoding))
    return directory


def prs(dates=("05/03/2019", "01/01/1600", ""), amounts=("12.50", "3", "0.5"), id_column="BEN_NIR_PSA"):
    """ER_PRS_F rows: patient, care start date (no layout of its own in the schema), an amount."""
    rows = [[id_column, "EXE_SOI_DTD", "PRS_PAI_MNT", "DCT_ORD_NUM", "FLX_DIS_DTD"]]
    for i, (d, a) in enumerate(zip(dates, amounts)):
        rows.append([IDS[i % len(IDS)], d, a, str(48213 + i), "2019-04-01"])
    return {"ER_PRS_F.csv": rows}


def mco_c(ent=("05032019", "31122018"), exe=("05MAR2019:00:00:00", "31DEC2018:00:00:00"), id_column="NIR_ANO_17"):
    """T_MCO19C rows: ENT_DAT (schema: ddMMyyyy) and EXE_SOI_DTD (schema: SAS datetime)."""
    rows = [["ETA_NUM", "RSA_NUM", id_column, "ENT_DAT", "EXE_SOI_DTD"]]
    for i, (e, x) in enumerate(zip(ent, exe)):
        rows.append(["750100042", str(i + 1), IDS[i % len(IDS)], e, x])
    return {"T_MCO19C.csv": rows}


def detect(tmp_path, cfg, files, **kw):
    return detect_profile(write(tmp_path / "delivery", files, **kw), cfg)


# --- separator ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sep", [";", ",", "\t", "|"])
def test_separator(tmp_path, cfg, sep):
    p = detect(tmp_path, cfg, {**prs(amounts=("12.50", "3", "1.25")), **mco_c()}, sep=sep)
    assert p.separator == sep
    assert p.detected["separator_votes"] == {sep: 2}
    assert p.name == p.source == "auto"
    validate(p)


def test_one_column_headers_are_no_evidence(tmp_path, cfg):
    # A one-column file splits the same under every separator; an uncatalogued file votes by column count.
    files = {"T_MCO19D.csv": [["ASS_DGN"], ["G972"]], "EXTRA.csv": [["A", "B", "C"], ["1", "2", "3"]]}
    p = detect(tmp_path, cfg, files, sep="|")
    assert p.separator == "|"
    assert p.detected["separator_votes"] == {"|": 1}
    assert p.detected["uncatalogued_files"] == ["EXTRA.csv"]


def test_bom_and_crlf(tmp_path, cfg):
    p = detect(tmp_path, cfg, {**prs(), **mco_c()}, bom=True, newline="\r\n")
    assert (p.separator, p.encoding) == (";", "utf-8")
    assert p.detected["bom"] == ["ER_PRS_F.csv", "T_MCO19C.csv"]
    assert p.detected["line_endings"] == {"crlf": 2, "lf": 0}
    assert p.date_formats == ("dd/MM/yyyy", "yyyy-MM-dd")
    assert p.column_date_formats == {}


# --- encoding ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, encoding, expected", [
    ("Pharmacie Côté", "utf-8", "utf-8"),
    ("Pharmacie Côté", "latin-1", "latin-1"),
    ("Dose d’œstrogène 5 €", "cp1252", "cp1252"),
    ("ASCII only", "latin-1", "utf-8"),
])
def test_encoding(tmp_path, cfg, text, encoding, expected):
    files = {**prs(), "IR_PHA_R.csv": [["PHA_CIP_C13", "PHA_MED_NOM"], ["3400930000001", text]]}
    p = detect(tmp_path, cfg, files, encoding=encoding)
    assert p.encoding == expected
    if expected != "utf-8":
        assert "IR_PHA_R.csv" in p.detected["encoding_evidence"]


def test_latin1_with_bytes_undefined_in_cp1252(tmp_path, cfg):
    d = write(tmp_path / "d", prs())
    (d / "IR_PHA_R.csv").write_bytes(b"PHA_CIP_C13;PHA_MED_NOM\n3400930000001;caf\xe9\x81\n")
    assert detect_profile(d, cfg).encoding == "latin-1"


def test_utf8_character_cut_at_the_sample_end(tmp_path, cfg):
    # 'é' (2 bytes in UTF-8) straddles the end of the sample of a file that goes on past it.
    d = write(tmp_path / "d", prs())
    head = b"PHA_CIP_C13;PHA_MED_NOM\n"
    body = b"1;" + b"x" * (SAMPLE_BYTES - len(head) - 3) + "é".encode() + b"\n" + b"2;fin\n" * 10
    assert len(head + body) > SAMPLE_BYTES and (head + body)[SAMPLE_BYTES - 1:SAMPLE_BYTES + 1] == "é".encode()
    (d / "IR_PHA_R.csv").write_bytes(head + body)
    assert detect_profile(d, cfg).encoding == "utf-8"


def test_sample_is_bounded(tmp_path, cfg):
    # Bytes and values past the first 64 KiB of a file are not read: a Latin-1 byte and decimal
    # commas after it change nothing.
    rows = prs(dates=["05/03/2019"] * 3000, amounts=["12.50"] * 3000)["ER_PRS_F.csv"]
    d = write(tmp_path / "d", {"ER_PRS_F.csv": rows})
    with open(d / "ER_PRS_F.csv", "ab") as fh:
        fh.write(b"".join(b"Qx7;05/03/2019;12,50;1;2019-04-01\n" for _ in range(3000)) + b"caf\xe9\n")
    assert (d / "ER_PRS_F.csv").stat().st_size > 3 * SAMPLE_BYTES
    p = detect_profile(d, cfg)
    assert (p.encoding, p.decimal_separator) == ("utf-8", ".")
    assert p.detected["sample"]["lines_read"] <= 200


# --- patient column ----------------------------------------------------------------------------
@pytest.mark.parametrize("alias", ["NUM_ENQ", "BEN_NIR_ANO"])
def test_patient_alias(tmp_path, cfg, alias):
    p = detect(tmp_path, cfg, {**prs(id_column=alias), **mco_c(id_column=alias)})
    assert p.patient_id_column == alias
    assert "2 file(s)" in p.detected["patient_column_evidence"]


def test_native_patient_columns(tmp_path, cfg):
    # IR_BEN_R has its own BEN_NIR_ANO column: that is not a patient alias.
    ir_ben = {"IR_BEN_R.csv": [["BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_NIR_ANO"], [IDS[0], "1", IDS[1]]]}
    p = detect(tmp_path, cfg, {**prs(), **mco_c(), **ir_ben})
    assert p.patient_id_column == "BEN_NIR_PSA"


# --- dates -------------------------------------------------------------------------------------
def test_schema_layouts_followed(tmp_path, cfg):
    # ddMMyyyy and SAS datetimes where the schema says so: nothing to add.
    p = detect(tmp_path, cfg, {**prs(), **mco_c(ent=("05032019", "01011600"))})
    assert p.column_date_formats == {}
    assert p.date_formats == ("dd/MM/yyyy", "yyyy-MM-dd")
    assert p.detected["date_evidence"]["layouts"] == {
        "dd/MM/yyyy": 1, "yyyy-MM-dd": 1, "ddMMyyyy": 1, "ddMMMyyyy:HH:mm:ss": 1}


@pytest.mark.parametrize("dates, expected", [
    (("05/03/2019", "01/01/1600", ""), ("dd/MM/yyyy", "yyyy-MM-dd")),  # + FLX_DIS_DTD's ISO dates
    (("2019-03-05", "1600-01-01", ""), ("yyyy-MM-dd",)),
    (("05032019", "01011600", "31122018"), ("yyyy-MM-dd", "ddMMyyyy")),
    (("20190305", "16000101", "20181231"), ("yyyy-MM-dd", "yyyyMMdd")),
    (("05MAR2019:00:00:00", "01JAN1600:00:00:00", ""), ("yyyy-MM-dd", "ddMMMyyyy:HH:mm:ss")),
    (("05MAR2019", "01jan1600", ""), ("yyyy-MM-dd", "ddMMMyyyy")),
])
def test_date_formats_of_fields_without_a_layout(tmp_path, cfg, dates, expected):
    p = detect(tmp_path, cfg, prs(dates=dates))
    assert p.date_formats == expected
    assert p.column_date_formats == {}


def test_date_formats_most_frequent_first(tmp_path, cfg):
    ir_ben = {"IR_BEN_R.csv": [["BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_DTE_INS", "BEN_DTE_MAJ"],
                               [IDS[0], "1", "2019-01-02", "2019-01-03"]]}
    p = detect(tmp_path, cfg, {**prs(), **ir_ben})
    assert p.date_formats == ("yyyy-MM-dd", "dd/MM/yyyy")
    assert p.detected["date_evidence"]["layouts"] == {"dd/MM/yyyy": 1, "yyyy-MM-dd": 3}


def test_eight_digit_layouts_of_fields_without_a_layout_disagreeing(tmp_path, cfg):
    # Two ddMMyyyy columns, one yyyyMMdd: tried in order, ddMMyyyy would misread 20100305 (20/10/0305
    # is a valid date), so the minority column gets its own layout.
    ir_ben = {"IR_BEN_R.csv": [["BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_DTE_INS", "BEN_DTE_MAJ"],
                               [IDS[0], "1", "02012019", "03012019"], [IDS[1], "1", "01011600", "31122019"]]}
    files = prs(dates=("20100305", "20011231", "20120101"))
    for row in files["ER_PRS_F.csv"][1:]:
        row[4] = ""
    p = detect(tmp_path, cfg, {**files, **ir_ben})
    assert p.date_formats == ("ddMMyyyy", "yyyyMMdd")
    assert p.column_date_formats == {"EXE_SOI_DTD": ("yyyyMMdd",)}


def test_columns_not_in_the_schema_layout(tmp_path, cfg):
    # ENT_DAT as dd/MM/yyyy, EXE_SOI_DTD as dd/MM/yyyy or SAS (CNAM study extracts).
    files = mco_c(ent=("05/03/2019", "01/01/1600", "31/12/2018"),
                  exe=("05/03/2019", "01JAN1600:00:00:00", "31/12/2018"))
    p = detect(tmp_path, cfg, files)
    assert p.column_date_formats == {"ENT_DAT": ("dd/MM/yyyy",),
                                     "EXE_SOI_DTD": ("dd/MM/yyyy", "ddMMMyyyy:HH:mm:ss")}


def test_eight_digit_dates_decided_by_validity(tmp_path, cfg):
    # yyyyMMdd where the schema says ddMMyyyy: 20190305 read as ddMMyyyy is year 0305, not plausible.
    p = detect(tmp_path, cfg, mco_c(ent=("20190305", "20181231")))
    assert p.column_date_formats == {"ENT_DAT": ("yyyyMMdd",)}
    # Values both readings accept (only with implausible years): the schema's layout wins.
    p = detect(tmp_path / "2", cfg, mco_c(ent=("10101010", "12121212")))
    assert p.column_date_formats == {}


def test_tables_disagreeing_about_a_column(tmp_path, cfg):
    ssr = {"T_SSR19C.csv": [["ETA_NUM", "RHA_NUM", "NIR_ANO_17", "ENT_DAT"], ["750100042", "1", IDS[0], "05032019"]]}
    p = detect(tmp_path, cfg, {**mco_c(ent=("2019-03-05", "2018-12-31")), **ssr})
    assert p.column_date_formats == {"T_MCOaaC.ENT_DAT": ("yyyy-MM-dd",)}
    # The ingest reads each table's ENT_DAT with its own layouts.
    with_profile = IngestConfig.load(profile=p)
    by_table = {f.table: {c.name: c.formats for c in f.columns} for f in with_profile.scan(tmp_path / "delivery")}
    assert by_table["T_MCOaaC"]["ENT_DAT"] == ("yyyy-MM-dd",)
    assert by_table["T_SSRaaC"]["ENT_DAT"][0] == "ddMMyyyy"


def test_unreadable_date_values_are_counted_not_copied(tmp_path, cfg):
    p = detect(tmp_path, cfg, prs(dates=("05/03/2019", "31/02/2019", "garbage")))
    assert p.date_formats == ("dd/MM/yyyy", "yyyy-MM-dd")
    assert p.detected["date_evidence"]["columns_with_unrecognised_values"] == ["ER_PRS_F.EXE_SOI_DTD"]
    assert "garbage" not in json.dumps(p.to_dict())


# --- decimal separator -------------------------------------------------------------------------
@pytest.mark.parametrize("amounts, expected", [
    (("12,50", "3", "0,5"), ","),
    (("12.50", "3", "0.5"), "."),
    (("12,50", "3", "0.5"), "."),
    (("12", "3", "5"), "."),
])
def test_decimal_separator(tmp_path, cfg, amounts, expected):
    assert detect(tmp_path, cfg, prs(amounts=amounts)).decimal_separator == expected


def test_decimal_commas_in_a_comma_separated_delivery_are_impossible(tmp_path, cfg):
    assert detect(tmp_path, cfg, prs(amounts=("12", "3", "5")), sep=",").decimal_separator == "."


# --- uncatalogued files, skipped entries, errors ----------------------------------------------
def test_uncatalogued_and_skipped_entries(tmp_path, cfg):
    d = write(tmp_path / "d", {**prs(), "MY_EXTRACT.csv": [["X", "Y"], ["a", "b"]]})
    (d / ".hidden.csv").write_bytes(b"a,b\n")
    (d / "_staging.csv").write_bytes(b"a,b\n")
    (d / "SHA256SUMS").write_bytes(b"0" * 64 + b"  ER_PRS_F.csv\n")
    (d / "README.txt").write_bytes(b"notes\n")
    (d / "_truth").mkdir()
    p = detect_profile(d, cfg)
    assert p.uncatalogued == "text"
    assert p.detected["files"] == 2
    assert p.detected["uncatalogued_files"] == ["MY_EXTRACT.csv"]
    assert p.detected["separator_votes"] == {";": 2}


def test_nothing_to_detect(tmp_path, cfg):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeliveryError, match=str(empty)):
        detect_profile(empty, cfg)
    with pytest.raises(DeliveryError, match="not found"):
        detect_profile(tmp_path / "missing", cfg)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    (other / "ER_PRS_F.csv").write_bytes(b"")
    with pytest.raises(DeliveryError, match=f"{other}.*empty CSV"):
        detect_profile(other, cfg)


def test_no_value_in_the_profile(tmp_path, cfg):
    files = {**prs(id_column="NUM_ENQ", amounts=("12,50", "1,25", "7")),
             **mco_c(id_column="NUM_ENQ", ent=("05/03/2019", "31/12/2018")),
             "EXTRA.csv": [["NOTE"], [IDS[2]]]}
    p = detect(tmp_path, cfg, files, encoding="cp1252")
    text = json.dumps(p.to_dict()) + p.to_yaml()
    values = {v for rows in files.values() for row in rows[1:] for v in row if len(v) > 3}
    assert len(values) > 10
    assert not [v for v in values if v in text]


# --- a generated delivery and the HDH samples --------------------------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from snds_synth.generate import generate

    out = tmp_path_factory.mktemp("synth") / "delivery"
    manifest = generate(out, n=60, seed=1, years=(2019, 2019), encoding="latin-1", id_column="NUM_ENQ",
                        dcir_dates="iso", quiet=True)
    return out, manifest


def test_generated_delivery(generated, cfg):
    out, manifest = generated
    p = detect_profile(out, cfg)
    assert (manifest["encoding"], manifest["id_column"], manifest["dcir_dates"]) == ("latin-1", "NUM_ENQ", "iso")
    assert p.separator == ";"
    assert p.encoding == "latin-1"
    assert p.patient_id_column == "NUM_ENQ"
    # ISO dates everywhere but in the layouts the schemas give (ENT_DAT ddMMyyyy, SAS EXE_SOI_DTD).
    assert p.date_formats == ("yyyy-MM-dd",)
    assert p.column_date_formats == {}
    assert p.decimal_separator == "."
    assert p.detected["files"] == len(manifest["files"])
    assert p.detected["uncatalogued_files"] == []
    # Every file reads under the detected profile.
    assert len(IngestConfig.load(profile=p).scan(out)) == len(manifest["files"])
    # No identifier (nor any other value of the identifier columns) in the profile.
    text = json.dumps(p.to_dict())
    ids = set()
    for path in out.glob("*.csv"):
        with open(path, encoding="latin-1", newline="") as fh:
            rows = csv.reader(fh, delimiter=";")
            header = next(rows)
            pos = [i for i, c in enumerate(header) if cfg.is_identifier("", c)]
            ids |= {r[i] for r in rows for i in pos if i < len(r) and r[i]}
    assert ids and not [v for v in ids if v in text]


def test_generated_delivery_ingests_as_with_the_profile_it_was_written_with(generated, tmp_path):
    # The ingest reads it alike with the detected profile and with the native one set to the writing
    # options: same rows written, same quarantine, same nulled cells.
    from dataclasses import replace

    from helpers import ingest_delivery

    out, _ = generated
    written = replace(load_profile("native"), encoding="latin-1", patient_id_column="NUM_ENQ")
    auto = ingest_delivery("duckdb", out, tmp_path / "auto", profile="auto")
    ref = ingest_delivery("duckdb", out, tmp_path / "ref", profile=written)
    assert auto["profile"]["source"] == "auto"
    assert auto["totals"] == ref["totals"] and auto["totals"]["rows_written"] > 1000
    for key in ("by_reason", "by_table", "nulled_cells"):
        assert auto["quarantine"][key] == ref["quarantine"][key]


_STRPTIME = {"dd/MM/yyyy": "%d/%m/%Y", "yyyy-MM-dd": "%Y-%m-%d", "ddMMyyyy": "%d%m%Y", "yyyyMMdd": "%Y%m%d",
             "ddMMMyyyy:HH:mm:ss": "%d%b%Y:%H:%M:%S", "ddMMMyyyy": "%d%b%Y"}


def _reads(formats, value: str) -> bool:
    for f in formats:
        try:
            dt.datetime.strptime(value, _STRPTIME[f])
            return True
        except ValueError:
            pass
    return False


def test_hdh_samples(cfg):
    p = detect_profile(SAMPLES, cfg)
    assert (p.separator, p.encoding, p.patient_id_column, p.decimal_separator) == (",", "utf-8", "BEN_NIR_PSA", ".")
    assert p.date_formats == ("yyyy-MM-dd",)
    assert p.column_date_formats == {}
    assert p.detected["uncatalogued_files"] == [] and p.detected["bom"] == []
    # The profile describes the files: every date the hand-written hdh_sample profile reads, the
    # detected one reads too, in every date column of every file.
    detected, reference = IngestConfig.load(profile=p), IngestConfig.load(profile=load_profile("hdh_sample"))
    checked = 0
    for path in sorted(SAMPLES.glob("*.csv")):
        ours, theirs = detected.describe(path), reference.describe(path)
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter=","))[1:]
        for col, ref in zip(ours.columns, theirs.columns):
            if col.kind != "date":
                continue
            for row in rows:
                value = row[col.position - 1].strip() if len(row) >= col.position else ""
                if value and _reads(ref.formats, value):
                    assert _reads(col.formats, value), (path.name, col.name, col.formats)
                    checked += 1
    assert checked > 100


# --- command line ------------------------------------------------------------------------------
def test_cli(tmp_path):
    files = {**prs(id_column="NUM_ENQ", amounts=("12,50", "1,25", "7")), **mco_c(id_column="NUM_ENQ")}
    d = write(tmp_path / "d", files)
    run = subprocess.run([sys.executable, "-m", "spark_jobs.detect", "--input", str(d)], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("#") and "config/profiles/" in run.stdout and "PROFILE=" in run.stdout
    p = profile_from_dict(yaml.safe_load(run.stdout), "detected.yaml")
    assert (p.separator, p.patient_id_column, p.decimal_separator) == (";", "NUM_ENQ", ",")
    assert p.detected["files"] == 2

    empty = tmp_path / "empty"
    empty.mkdir()
    run = subprocess.run([sys.executable, "-m", "spark_jobs.detect", "--input", str(empty)], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and str(empty) in run.stderr


def test_delivery_on_s3(s3_env, cfg):
    from s3server import new_bucket, s3_client

    client = s3_client(s3_env)
    bucket = new_bucket(client, "detect")
    for path in SAMPLES.glob("*.csv"):
        client.put_object(Bucket=bucket, Key=f"deliveries/d1/{path.name}", Body=path.read_bytes())
    client.put_object(Bucket=bucket, Key="deliveries/d1/_truth/x.csv", Body=b"a;b\n")
    on_s3, local = detect_profile(f"s3://{bucket}/deliveries/d1", cfg), detect_profile(SAMPLES, cfg)
    assert on_s3.to_dict() | {"description": ""} == local.to_dict() | {"description": ""}
