"""The generator's truth (`_truth/events/*.csv`) made comparable with the model tables.

Truth tables hold raw patient identifiers; the model holds their pseudonyms. The tests know the
pepper and argon2 parameters they pseudonymise with (helpers.TEST_PEPPER, FAST_ARGON2), so the truth's
identifiers are hashed the same way here and both sides are compared as multisets of text rows.
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb

from helpers import FAST_ARGON2, TEST_PEPPER
from spark_jobs.vault import Argon2Params, pseudonym


def _text(value) -> str:
    """One value as the truth CSV writes it: ISO dates, plain integers, empty for NULL."""
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def truth_rows(delivery: Path, table: str, pepper: bytes = TEST_PEPPER,
               params: Argon2Params = FAST_ARGON2) -> tuple[list[str], list[tuple]]:
    """(columns, sorted rows) of a truth event table, patient identifiers pseudonymised."""
    with open(delivery / "_truth" / "events" / f"{table}.csv", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        columns = next(reader)
        rows = list(reader)
    cache: dict[str, str] = {}
    i = columns.index("patient_id")
    for row in rows:
        raw = row[i]
        if raw not in cache:
            cache[raw] = pseudonym(raw, pepper, params)
        row[i] = cache[raw]
    return columns, sorted(map(tuple, rows))


def model_rows(model_dir: Path, table: str, columns: list[str]) -> list[tuple]:
    """The model table's rows, as truth-formatted text, for the truth's columns."""
    con = duckdb.connect()
    select = ", ".join(f'"{c}"' for c in columns)
    rows = con.execute(f"SELECT {select} FROM read_parquet('{model_dir / table}/**/*.parquet')").fetchall()
    return sorted(tuple(_text(v) for v in row) for row in rows)


def compare_with_truth(delivery: Path, model_dir: Path, table: str, keep=None,
                       columns: list[str] | None = None) -> tuple[list[tuple], list[tuple]]:
    """(rows only in the truth, rows only in the model) for one event table; `keep(row: dict)` selects
    the truth rows expected (and the same filter applies to the model's), `columns` the columns compared."""
    from collections import Counter

    all_columns, expected = truth_rows(delivery, table)
    got = model_rows(model_dir, table, all_columns)
    if keep is not None:
        expected = [r for r in expected if keep(dict(zip(all_columns, r)))]
        got = [r for r in got if keep(dict(zip(all_columns, r)))]
    if columns is not None:
        idx = [all_columns.index(c) for c in columns]
        expected = [tuple(r[i] for i in idx) for r in expected]
        got = [tuple(r[i] for i in idx) for r in got]
    e, g = Counter(expected), Counter(got)
    return sorted((e - g).elements()), sorted((g - e).elements())
