"""Pseudonymisation rules (sql/pseudonymise/ and the identifier part of the parse), on both engines."""

from __future__ import annotations

import pytest

from helpers import FAST_ARGON2, TEST_PEPPER
from spark_jobs import sqlrender
from spark_jobs.delivery import Column
from spark_jobs.vault import pseudonym

PLACEHOLDERS = ["xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXD"]
P = {raw: pseudonym(raw, TEST_PEPPER, FAST_ARGON2) for raw in ("AAA", "BBB", "CCC", "DDD")}


def _lines(engine, tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    engine.read_lines(name.split(".")[0], path, "utf-8")
    return path


def test_release_identifiers_distinct_all_lines_no_placeholders(engine, tmp_path):
    _lines(engine, tmp_path, "f1.csv",
           "ID;X;ID2\nAAA;1;BBB\nAAA;2;\nxxxxxxxxxxxxxxxxx;3;CCC\n;4;XXXXXXXXXXXXXXXXD\nEEE;5\n0;EEE;6;FFF\n")
    _lines(engine, tmp_path, "f2.csv", "X;ID\n1;DDD\nbroken line;\n  ;\n")  # the 2nd line is malformed
    sql = sqlrender.render("pseudonymise/release_identifiers.sql", separator=";",
                           sources=[{"view": "f1", "positions": [1, 3], "fields": 3},
                                    {"view": "f2", "positions": [2], "fields": 2}])
    # Every distinct value, as delivered; the next step leaves out blanks and placeholders. Lines with
    # a missing or extra field give nothing: there the positions do not say which field is which.
    assert sorted(r for (r,) in engine.rows(sql)) == sorted(
        ["AAA", "BBB", "CCC", "DDD", "", "xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXD"])


def test_only_new_identifiers_are_hashed_once(engine):
    engine.register_pseudonymiser(TEST_PEPPER, FAST_ARGON2, 2)
    engine.register_rows("vault_ids", ["raw_id", "pseudonym"], [("AAA", P["AAA"])])
    engine.register_rows("release_ids", ["raw_id"], [("AAA",), ("BBB",), ("CCC",), ("",), ("XXXXXXXXXXXXXXXXD",)])
    before = engine.pseudonym_calls()
    engine.create_view("new_ids", sqlrender.render("pseudonymise/new_identifiers.sql", placeholders=PLACEHOLDERS),
                       materialize=True)
    engine.spread("new_ids")
    engine.create_view("new_pseudonyms", sqlrender.render("pseudonymise/hash_new_identifiers.sql"), materialize=True)
    engine.create_view("id_map", sqlrender.render("pseudonymise/release_id_map.sql"), materialize=True)
    assert sorted(engine.rows("SELECT raw_id, pseudonym FROM id_map")) == sorted((r, P[r]) for r in ("AAA", "BBB", "CCC"))
    assert sorted(engine.rows("SELECT raw_id FROM new_pseudonyms")) == [("BBB",), ("CCC",)]
    assert engine.pseudonym_calls() - before == 2  # AAA came from the vault; each new one hashed once
    for view in ("id_map", "new_pseudonyms", "new_ids", "release_ids", "vault_ids"):
        engine.drop_view(view)


def _parse(engine, tmp_path, text, unlinked_rule, n_strict=True):
    _lines(engine, tmp_path, "raw_lines.csv", text)
    cols = (Column("NIR", "string", 1, "NIR", identifier=True), Column("N", "integer", 2, "N", strict=n_strict),
            Column("OTHER_ID", "string", 3, "OTHER_ID", identifier=True))
    engine.register_rows("id_map", ["raw_id", "pseudonym"], [(r, P[r]) for r in ("AAA", "BBB", "CCC")])
    sql = sqlrender.render("ingest/parse_delivery_file.sql", separator=";", columns=list(cols),
                           columns_in_schema_order=list(cols), identifier_columns=[cols[0], cols[2]],
                           patient_column=cols[0], unlinked_rule=unlinked_rule, placeholders=PLACEHOLDERS)
    engine.create_view("parsed", sql, materialize=True)
    return sorted(engine.rows('SELECT "N", "NIR", "OTHER_ID", _reason, _dropped_by FROM parsed'), key=repr)


def test_an_unreadable_value_outside_the_rule_columns_is_nulled_and_counted(engine, tmp_path):
    """N not strict: its unreadable value becomes NULL, the row is kept and `_nulled` says which
    column, why and the value's shape (never the value: it could be an identifier)."""
    got = _parse(engine, tmp_path, "NIR;N;OTHER_ID\nAAA;1;BBB\nCCC;x7;AAA\nBBB;;\n", None, n_strict=False)
    assert got == sorted([(1, P["AAA"], P["BBB"], None, None), (None, P["CCC"], P["AAA"], None, None),
                          (None, P["BBB"], None, None, None)], key=repr)
    nulled = sorted(engine.rows('SELECT "NIR", _nulled FROM parsed'), key=repr)
    assert nulled == sorted([(P["AAA"], None), (P["CCC"], "N|bad_integer|A9"), (P["BBB"], None)], key=repr)
    engine.drop_view("parsed")


@pytest.mark.parametrize("unlinked_rule", [None, "pmsi_placeholder_nir"])
def test_identifiers_replaced_and_unlinked_rows_routed(engine, tmp_path, unlinked_rule):
    got = _parse(engine, tmp_path, "NIR;N;OTHER_ID\nAAA;1;BBB\nBBB;2;\nxxxxxxxxxxxxxxxxx;3;CCC\n;4;AAA\nCCC;x;AAA\n",
                 unlinked_rule)
    unlinked = ("missing_patient_id:NIR", None) if unlinked_rule is None else (None, unlinked_rule)
    assert got == sorted([
        (1, P["AAA"], P["BBB"], None, None),
        (2, P["BBB"], None, None, None),   # an empty identifier stays NULL
        (3, None, P["CCC"], *unlinked),    # placeholder: never hashed, quarantined or dropped by the rule
        (4, None, P["AAA"], *unlinked),    # empty patient id: the same
        (None, P["CCC"], P["AAA"], "bad_integer:N", None),
    ], key=repr)
    engine.drop_view("parsed")


def test_quarantine_lines_carry_pseudonyms_and_mask_malformed_lines(engine, tmp_path):
    _parse(engine, tmp_path, "NIR;N;OTHER_ID\nAAA;1;BBB\nAAA;x;BBB\n1;BBB\nCCC;2;BBB;AAAA\nLEAKS1234SHIFT;31/02/2020\n", None)
    sql = sqlrender.render("pseudonymise/quarantine_lines.sql", separator=";", source_file="t.csv")
    got = sorted(engine.rows(f"SELECT source_file, reason, raw_line FROM ({sql}) AS q"))
    assert got == sorted([
        ("t.csv", "bad_integer:N", f"{P['AAA']};x;{P['BBB']}"),
        # A line with a missing or extra field: known identifiers become pseudonyms wherever they are,
        # every other field is reduced to its shape (it could be an unknown identifier).
        ("t.csv", "wrong_column_count", f"9;{P['BBB']}"),
        ("t.csv", "wrong_column_count", f"{P['CCC']};9;{P['BBB']};AAAA"),
        ("t.csv", "wrong_column_count", "AAAAA9999AAAAA;99/99/9999"),
    ])
    engine.drop_view("parsed")
