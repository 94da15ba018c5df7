"""Unit tests of the ingest parsing rules (sql/ingest/_parse.sql), on DuckDB and on Spark.

Each case is (text as delivered, expected typed value or BAD). BAD means the line is quarantined with
reason bad_<kind>:<COLUMN>; an empty field is NULL and valid.
"""

from __future__ import annotations

import datetime as dt

import pytest

from spark_jobs import sqlrender
from spark_jobs.delivery import Column, DeliveredFile

BAD = object()
D = dt.date

CASES = {
    ("integer", ()): [
        ("12", 12), ("-3", -3), ("+4", 4), (" 7 ", 7), ("", None), ("0012", 12),
        ("12a", BAD), ("1.0", BAD), ("1 2", BAD), ("9999999999999999999", BAD), ("-", BAD),
    ],
    ("number", ()): [
        ("23.50", 23.5), ("-12.3", -12.3), (".5", 0.5), ("7", 7.0), ("1e3", 1000.0), ("", None),
        ("1O.5", BAD), ("1,5", BAD), ("nan", BAD), ("inf", BAD), ("1.2.3", BAD),
    ],
    ("boolean", ()): [("0", False), ("1", True), ("true", True), ("FALSE", False), ("2", BAD), ("oui", BAD)],
    ("date", ("dd/MM/yyyy", "yyyy-MM-dd")): [
        ("05/03/2019", D(2019, 3, 5)), ("2019-03-05", D(2019, 3, 5)), ("29/02/2020", D(2020, 2, 29)),
        ("29/02/2000", D(2000, 2, 29)), ("01/01/1600", D(1600, 1, 1)), ("31/12/2021", D(2021, 12, 31)),
        ("31/02/2020", BAD), ("29/02/2019", BAD), ("29/02/1900", BAD), ("2020-13-01", BAD),
        ("5/3/2019", BAD), ("31/04/2020", BAD), ("00/01/2020", BAD), ("2019/03/05", BAD), ("20190305", BAD),
    ],
    ("date", ("ddMMyyyy",)): [
        ("05032019", D(2019, 3, 5)), ("29022020", D(2020, 2, 29)),
        ("3302201", BAD), ("32012019", BAD), ("05-03-2019", BAD),
    ],
    ("date", ("ddMMMyyyy:HH:mm:ss",)): [
        ("05MAR2019:00:00:00", D(2019, 3, 5)), ("02Jan2007:22:12:17", D(2007, 1, 2)),
        ("29FEB2020:00:00:00", D(2020, 2, 29)),
        ("12JUX2019:00:00:00", BAD), ("05MAR2019:25:00:00", BAD), ("05MAR2019", BAD), ("30FEB2020:00:00:00", BAD),
    ],
    ("year", ()): [("2019", 2019), ("201903", 201903), ("19", BAD), ("2019a", BAD)],
    ("yearmonth", ()): [("160001", 160001), ("202112", 202112), ("202213", BAD), ("2021", BAD)],
    ("month", ()): [("04", 4), ("4", 4), ("12", 12), ("13", BAD), ("00", BAD), ("x", BAD)],
    ("string", ()): [("abc", "abc"), (" a ", " a "), ("", None), ("Évry", "Évry")],
}


# These rules concern typing; identifier handling is tested in test_pseudonymise_rules.py.
NO_IDENTIFIERS = {"identifier_columns": [], "patient_column": None, "unlinked_rule": None, "placeholders": []}


def _parse(engine, tmp_path, kind: str, formats: tuple, texts: list[str]) -> list[tuple]:
    path = tmp_path / f"{kind}.csv"
    # Two columns: an integer row number (order) and the value under test.
    path.write_text("N;V\n" + "".join(f"{i};{t}\n" for i, t in enumerate(texts)), encoding="utf-8")
    cols = (Column("N", "integer", 1, "N"), Column("V", kind, 2, "V", formats=formats))
    f = DeliveredFile(path=path, table="T", year=None, columns=cols, schema_order=("N", "V"))
    engine.read_lines("raw_lines", path, "utf-8")
    sql = sqlrender.render("ingest/parse_delivery_file.sql", separator=";", columns=list(cols),
                           columns_in_schema_order=list(cols), **NO_IDENTIFIERS)
    engine.create_view("parsed", sql)
    rows = engine.rows('SELECT "N", "V", _reason FROM parsed ORDER BY "N"')
    engine.drop_view("parsed")
    return [(v, r) for _, v, r in rows]


@pytest.mark.parametrize("kind,formats", list(CASES), ids=lambda x: x if isinstance(x, str) else "-".join(x) or "-")
def test_parse_value(engine, tmp_path, kind, formats):
    cases = CASES[(kind, formats)]
    got = _parse(engine, tmp_path, kind, formats, [t for t, _ in cases])
    for (text, expected), (value, reason) in zip(cases, got):
        if expected is BAD:
            assert reason == f"bad_{kind}:V" and value is None, f"{text!r} should be refused, got {value!r}/{reason}"
        else:
            assert reason is None, f"{text!r} refused ({reason}), expected {expected!r}"
            assert value == expected, f"{text!r} parsed as {value!r}, expected {expected!r}"


def test_wrong_column_count_and_first_bad_column(engine, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("A;B;C\n1;2;3\n1;2\n1;2;3;4\nx;y;3\n1;y;3\n\n1;;\n", encoding="utf-8")
    cols = tuple(Column(n, "integer", i, n) for i, n in enumerate("ABC", start=1))
    engine.read_lines("raw_lines", path, "utf-8")
    sql = sqlrender.render("ingest/parse_delivery_file.sql", separator=";", columns=list(cols),
                           columns_in_schema_order=list(cols), **NO_IDENTIFIERS)
    engine.create_view("parsed", sql)
    got = sorted(engine.rows('SELECT _line, _reason, "A", "B", "C" FROM parsed'), key=repr)
    assert got == sorted([
        ("1;2;3", None, 1, 2, 3),
        ("1;2", "wrong_column_count", None, None, None),
        ("1;2;3;4", "wrong_column_count", None, None, None),
        ("x;y;3", "bad_integer:A", None, None, 3),  # the first bad column in delivery order
        ("1;y;3", "bad_integer:B", 1, None, 3),
        ("1;;", None, 1, None, None),  # empty fields are NULL, not errors; the blank line is no row
    ], key=repr)
    engine.drop_view("parsed")


def test_crlf_and_latin1(engine, tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("A;B\r\n1;Évry\r\n2;Cergy\r\n".encode("latin-1"))
    cols = (Column("A", "integer", 1, "A"), Column("B", "string", 2, "B"))
    engine.read_lines("raw_lines", path, "latin-1")
    sql = sqlrender.render("ingest/parse_delivery_file.sql", separator=";", columns=list(cols),
                           columns_in_schema_order=list(cols), **NO_IDENTIFIERS)
    engine.create_view("parsed", sql)
    assert sorted(engine.rows('SELECT "A", "B", _reason FROM parsed')) == [(1, "Évry", None), (2, "Cergy", None)]
    engine.drop_view("parsed")


@pytest.mark.parametrize("sep", [",", "|", "\t", "."])
def test_separators(engine, tmp_path, sep):
    """Any one-character separator, regex metacharacters included (Spark splits with a regex)."""
    path = tmp_path / "t.csv"
    path.write_text(f"A{sep}B\n1{sep}x\n2{sep}\n", encoding="utf-8")
    cols = (Column("A", "integer", 1, "A"), Column("B", "string", 2, "B"))
    engine.read_lines("raw_lines", path, "utf-8")
    sql = sqlrender.render("ingest/parse_delivery_file.sql", separator=sep, columns=list(cols),
                           columns_in_schema_order=list(cols), **NO_IDENTIFIERS)
    engine.create_view("parsed", sql)
    assert sorted(engine.rows('SELECT "A", "B", _reason FROM parsed'), key=repr) == [(1, "x", None), (2, None, None)]
    engine.drop_view("parsed")


def test_spark_split_uses_the_plain_separator():
    from spark_jobs.engines.spark_engine import SparkEngine

    eng = SparkEngine.__new__(SparkEngine)  # transpiling needs no session
    assert "SPLIT(line, ';')" in eng.transpile("SELECT string_split(line, ';') FROM t")
    assert "SPLIT(line, '\\\\|')" in eng.transpile("SELECT string_split(line, '|') FROM t")
