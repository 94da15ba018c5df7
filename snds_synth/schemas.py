"""Table schemas (config/schemas/**.json) and the value layout each column is written in."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "config" / "schemas"
#: The generator's own copies of the HDH schemas (schema-snds) of the tables it writes only as delivery
#: variants (`extra_tables`): their header is the HDH schema's field list, whatever config/ catalogues.
BUNDLED_DIR = Path(__file__).resolve().parent / "reference" / "schemas"

#: Columns written as opaque strings whatever the schema says (the ingest overrides them the same way:
#: config/ingest.yaml `identifier_columns` and `type_overrides`).
STRING_COLUMNS = frozenset({
    "BEN_NIR_PSA", "NIR_ANO_17", "NUM_ENQ", "BEN_IDT_ANO", "BEN_NIR_ANO", "ASS_NIR_ANO", "NIR_ANO_MAM",
    "ETA_NUM", "ETA_NUM_EPMSI", "ETA_NUM_GEO", "RSA_NUM", "RHA_NUM", "RHS_NUM", "RHAD_NUM", "SEQ_NUM", "RSS_NUM", "RIP_NUM",
})

PATIENT_COLUMNS = ("BEN_NIR_PSA", "NIR_ANO_17")

SAS_DATETIME = "%d%b%Y:%H:%M:%S"


@lru_cache(maxsize=None)
def schema(table: str) -> dict:
    sub = "reference" if table == "REF_ATC_DDD" else "snds"
    path = BUNDLED_DIR / f"{table}.json"
    if not path.is_file():
        path = SCHEMA_DIR / sub / f"{table}.json"
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@lru_cache(maxsize=None)
def fields(table: str) -> dict[str, dict]:
    return {f["name"]: f for f in schema(table)["fields"]}


@lru_cache(maxsize=None)
def order(table: str) -> tuple[str, ...]:
    return tuple(f["name"] for f in schema(table)["fields"])


def is_pmsi(table: str) -> bool:
    return table.startswith("T_")


def kind(table: str, column: str) -> str:
    """Value kind as the ingest validates it: string, integer, number, boolean, year, yearmonth, month,
    or one of the date layouts date:default, date:dmy8, date:sas."""
    if column in STRING_COLUMNS:
        return "string"
    f = fields(table)[column]
    t, fmt = f.get("type", "string"), f.get("format", "default") or "default"
    if t in ("date", "datetime"):
        if fmt == "%m":
            return "month"
        if fmt == "default":
            return "date:default"
        if fmt == "%d%m%Y":
            return "date:dmy8"
        if fmt == SAS_DATETIME:
            return "date:sas"
        raise ValueError(f"{table}.{column}: unsupported date format {fmt}")
    return t


def reason_kind(table: str, column: str) -> str:
    """The `<kind>` of an ingest quarantine reason `bad_<kind>:<COLUMN>`."""
    k = kind(table, column)
    return "date" if k.startswith("date:") else k
