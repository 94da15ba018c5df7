"""Unit tests of the ingest parsing rules (sql/ingest/_parse.sql), on DuckDB and on Spark.

Each case is (text as delivered, expected typed value or BAD). BAD means the value does not parse: in a
rule column (Column.strict) the line is quarantined with reason bad_<kind>:<COLUMN>; in any other column
the cell is NULL, the line kept and the cell listed in `_nulled` with its shape. An empty field is NULL
and valid.
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
        ("1.0", 1), ("61.0", 61), ("61.", 61), ("-2.00", -2),  # integers written as decimals
        ("12a", BAD), ("1.5", BAD), ("1,0", BAD), ("1 2", BAD), ("9999999999999999999", BAD), ("-", BAD),
    ],
    ("integer", ("decimal_comma",)): [("12", 12), ("1,0", 1), ("1.0", 1), ("1,5", BAD)],
    ("number", ()): [
        ("23.50", 23.5), ("-12.3", -12.3), (".5", 0.5), ("7", 7.0), ("1e3", 1000.0), ("", None),
        ("1O.5", BAD), ("1,5", BAD), ("nan", BAD), ("inf", BAD), ("1.2.3", BAD),
    ],
    ("number", ("decimal_comma",)): [("12,50", 12.5), ("-0,5", -0.5), ("12.50", 12.5), ("7", 7.0), ("1,2,3", BAD)],
    ("code", ()): [("000", "000"), ("111", "111"), ("D11", "D11"), ("9999.0", "9999"), ("0.0", "0"), ("1.5", "1.5"),
                   ("", None)],
    ("boolean", ()): [("0", False), ("1", True), ("true", True), ("FALSE", False), ("1.0", True), ("2", BAD),
                      ("oui", BAD), ("000", BAD)],
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
    ("date", ("yyyy-MM-ddTHH:mm:ss",)): [
        ("1904-05-22T17:47:16Z", D(1904, 5, 22)), ("2019-03-05 00:00:00", D(2019, 3, 5)),
        ("2019-03-05T00:00:00.123Z", D(2019, 3, 5)), ("2019-02-30T00:00:00", BAD), ("2019-03-05T25:00:00", BAD),
        ("2019-03-05", BAD),
    ],
    ("year", ()): [("2019", 2019), ("201903", 201903), ("2019.0", 2019), ("19", BAD), ("2019a", BAD)],
    ("yearmonth", ()): [("160001", 160001), ("202112", 202112), ("082019", 201908), ("122021", 202112),
                        ("202213", BAD), ("2021", BAD), ("132019", BAD)],
    ("month", ()): [("04", 4), ("4", 4), ("12", 12), ("4.0", 4), ("13", BAD), ("00", BAD), ("x", BAD)],
    ("string", ()): [("abc", "abc"), (" a ", " a "), ("", None), ("Évry", "Évry")],
}


# These rules concern typing; identifier handling is tested in test_pseudonymise_rules.py.
NO_IDENTIFIERS = {"identifier_columns": [], "patient_column": None, "unlinked_rule": None, "placeholders": []}


def _parse(engine, tmp_path, kind: str, formats: tuple, texts: list[str], strict: bool = True) -> list[tuple]:
    path = tmp_path / f"{kind}.csv"
    # Two columns: an integer row number (order) and the value under test.
    path.write_text("N;V\n" + "".join(f"{i};{t}\n" for i, t in enumerate(texts)), encoding="utf-8")
    comma = "decimal_comma" in formats
    formats = tuple(f for f in formats if f != "decimal_comma")
    cols = (Column("N", "integer", 1, "N", strict=True),
            Column("V", kind, 2, "V", formats=formats, strict=strict, decimal_comma=comma))
    engine.read_lines("raw_lines", path, "utf-8")
    sql = sqlrender.render("ingest/parse_delivery_file.sql", separator=";", columns=list(cols),
                           columns_in_schema_order=list(cols), **NO_IDENTIFIERS)
    engine.create_view("parsed", sql)
    rows = engine.rows('SELECT "N", "V", _reason, _nulled FROM parsed ORDER BY "N"')
    engine.drop_view("parsed")
    return [(v, r, n) for _, v, r, n in rows]


@pytest.mark.parametrize("kind,formats", list(CASES), ids=lambda x: x if isinstance(x, str) else "-".join(x) or "-")
def test_parse_value(engine, tmp_path, kind, formats):
    cases = CASES[(kind, formats)]
    got = _parse(engine, tmp_path, kind, formats, [t for t, _ in cases])
    for (text, expected), (value, reason, nulled) in zip(cases, got):
        assert nulled is None  # a rule column is never nulled: its bad value quarantines the row
        if expected is BAD:
            assert reason == f"bad_{kind}:V" and value is None, f"{text!r} should be refused, got {value!r}/{reason}"
        else:
            assert reason is None, f"{text!r} refused ({reason}), expected {expected!r}"
            assert value == expected, f"{text!r} parsed as {value!r}, expected {expected!r}"


@pytest.mark.parametrize("kind,formats", [k for k in CASES if k[0] not in ("string", "code")],
                         ids=lambda x: x if isinstance(x, str) else "-".join(x) or "-")
def test_unreadable_value_of_other_columns_is_nulled_and_counted(engine, tmp_path, kind, formats):
    """Outside rule columns the schema type is a hint: an unreadable value keeps its row, the cell
    is NULL and `_nulled` says which column, why, and the value's shape (never the value)."""
    cases = CASES[(kind, formats)]
    got = _parse(engine, tmp_path, kind, formats, [t for t, _ in cases], strict=False)
    for (text, expected), (value, reason, nulled) in zip(cases, got):
        assert reason is None, f"{text!r}: row quarantined ({reason}) though V is no rule column"
        if expected is BAD:
            shape = "".join("9" if ch.isdigit() else "A" if ch.isascii() and ch.isalpha() else ch for ch in text.strip())
            assert value is None and nulled == f"V|bad_{kind}|{shape}", (text, value, nulled)
        else:
            assert value == expected and nulled is None, (text, value, nulled)


def test_wrong_column_count_and_first_bad_column(engine, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("A;B;C\n1;2;3\n1;2\n1;2;3;4\nx;y;3\n1;y;3\n\n1;;\n", encoding="utf-8")
    cols = tuple(Column(n, "integer", i, n, strict=True) for i, n in enumerate("ABC", start=1))
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


@pytest.mark.parametrize("encoding, text", [
    ("latin-1", "A;B\r\n1;Évry\r\n2;Cergy\r\n"),
    # Windows-1252 (French Windows exports): ’ € œ are bytes 0x92 0x80 0x9C, which Latin-1 does not
    # have; both engines read them the same way
    ("cp1252", "A;B\r\n1;l’hôpital 5€\r\n2;cœur\r\n"),
])
def test_crlf_and_single_byte_encodings(engine, tmp_path, encoding, text):
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode(encoding))
    cols = (Column("A", "integer", 1, "A"), Column("B", "string", 2, "B"))
    engine.read_lines("raw_lines", path, encoding)
    sql = sqlrender.render("ingest/parse_delivery_file.sql", separator=";", columns=list(cols),
                           columns_in_schema_order=list(cols), **NO_IDENTIFIERS)
    engine.create_view("parsed", sql)
    expected = [tuple(int(v) if n == 0 else v for n, v in enumerate(r.split(";"))) + (None,)
                for r in text.split("\r\n")[1:-1]]
    assert sorted(engine.rows('SELECT "A", "B", _reason FROM parsed')) == expected
    engine.drop_view("parsed")
    engine.drop_view("raw_lines")


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
