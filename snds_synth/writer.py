"""CSV writing as CNAM delivers: `;`, header, no quoting, `\\n`, empty = null; plus planted malformed lines.

Rows are joined into lines with pyarrow compute (vectorised) and the line buffer is written as is,
chunk by chunk, so large DCIR tables are written at disk speed.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import fmt, schemas

CHUNK_ROWS = 250_000
WORKERS = max(1, min(4, os.cpu_count() or 1))


#: Python codec of each delivery encoding.
ENCODINGS = {"utf-8": "utf-8", "latin-1": "latin-1", "cp1252": "cp1252"}
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass
class Profile:
    dcir_dates: str = "dmy"  # dmy | iso
    encoding: str = "utf-8"  # utf-8 | latin-1 | cp1252
    id_column: str = "BEN_NIR_PSA"  # BEN_NIR_PSA | NUM_ENQ
    quiet: bool = False
    log: list = field(default_factory=list)
    #: delivery variants (snds_synth.variants) that change how values are written
    variants: frozenset = frozenset()
    seed: int = 0
    _rngs: dict = field(default_factory=dict, repr=False)

    def has(self, variant: str) -> bool:
        return variant in self.variants

    def rng(self, name: str) -> np.random.Generator:
        """A generator of its own per variant feature (never the world's): a variant changes nothing
        else in the delivery, and the same arguments give the same files."""
        if name not in self._rngs:
            self._rngs[name] = np.random.default_rng([int(self.seed), zlib.crc32(name.encode())])
        return self._rngs[name]

    @property
    def codec(self) -> str:
        return ENCODINGS[self.encoding]

    @property
    def eol(self) -> str:
        return "\r\n" if (self.has("crlf_bom") or self.has("crlf")) else "\n"

    @property
    def bom(self) -> bool:
        return self.codec == "utf-8" and (self.has("crlf_bom") or self.has("bom"))

    def date_layout(self, table: str) -> str:
        if schemas.is_pmsi(table):
            return "iso"
        return "dmy" if self.dcir_dates == "dmy" else "iso"

    def layout(self, table: str, column: str) -> str | None:
        """The layout a date-like column is written in (fmt.DATES), None for other columns."""
        k = schemas.kind(table, column)
        if schemas.is_pmsi(table) and k.startswith("date:"):
            if self.has("sas_datetimes") and column in SAS_DATETIME_COLUMNS:
                return "sas"
            if self.has("sas_datetimes") and column in DMY8_COLUMNS:
                return "dmy8"
        if self.has("return_codes3") and (table, column) in MMYYYY_COLUMNS:
            return "my"
        return {
            "date:default": self.date_layout(table),
            "date:dmy8": "dmy8",
            "date:sas": "sas",
            "month": "m",
            "yearmonth": "ym",
            "year": "y",
        }.get(k)


#: sas_datetimes: PMSI columns written as SAS datetimes (ddMMMyyyy:HH:mm:ss) / ddMMyyyy in every table
SAS_DATETIME_COLUMNS = ("EXE_SOI_DTD", "EXE_SOI_DTF")
DMY8_COLUMNS = ("ENT_DAT", "SOR_DAT")
#: return_codes3: yearmonth columns some PMSI files write MMyyyy
MMYYYY_COLUMNS = (("T_SSRaaB", "MOI_ANN"),)


class Formatter:
    """Formats values of a table's columns according to the column's schema kind."""

    def __init__(self, profile: Profile, table: str):
        self.profile = profile
        self.table = table

    def date(self, column: str, days) -> pa.Array:
        layout = self.profile.layout(self.table, column)
        if layout is None:
            raise TypeError(f"{self.table}.{column} is {schemas.kind(self.table, column)}, not a date-like column")
        return fmt.s_date(days, layout)


def _bad_token(profile: Profile, table: str, column: str, serial: int) -> str:
    k = schemas.kind(table, column)
    if k.startswith("date:"):
        layout = profile.layout(table, column)
        if layout == "dmy8":
            return ["3302201", "31022019", "1503201"][serial % 3]
        if layout == "sas":
            return ["12JUX2019:00:00:00", "31FEB2020:00:00:00"][serial % 2]
        if schemas.is_pmsi(table):
            return ["2020-13-01", "2019-02-30"][serial % 2]
        return ["31/02/2020", "2020-13-01", "00/01/2019"][serial % 3] if profile.dcir_dates == "dmy" else \
            ["2020-02-30", "2020-13-01", "31/02/2020"][serial % 3]
    if k == "number" and profile.has("decimal_comma"):
        return ["1O,5", "3,4,5", "1 230,50"][serial % 3]
    if k == "integer":
        return ["12a", "1,5", "--3"][serial % 3]
    if k == "number":
        return ["1O.5", "12,30", "3.4.5"][serial % 3]
    if k == "boolean":
        return "2"
    if k == "year":
        return "20I9"
    if k == "month":
        return "13"
    raise ValueError(f"cannot corrupt {table}.{column} of kind {k}")


def _float_int(arr: pa.Array) -> pa.Array:
    """float_ints: an integer written as a decimal with a zero fraction (`61` -> `61.0`, `01` -> `1.0`);
    values that are not plain integers (GHS_NUM 'D11') are left as they are."""
    ok = pc.match_substring_regex(arr, r"^-?[0-9]+$")
    num = pc.cast(pc.if_else(ok, arr, pa.scalar("0")), pa.int64())
    return pc.if_else(ok, pc.binary_join_element_wise(pc.cast(num, pa.string()), ".0", ""), arr)


def _decimal_comma(arr: pa.Array) -> pa.Array:
    """decimal_comma: `12.50` -> `12,50` (no thousands separator)."""
    return pc.replace_substring(arr, ".", ",")


class Lazy:
    """Rows formatted on demand, chunk by chunk: make(start, stop) -> {column: string array}."""

    def __init__(self, n: int, make):
        self.n = n
        self.make = make


def _as_lazy(data) -> Lazy:
    if isinstance(data, Lazy):
        return data
    n = len(next(iter(data.values()))) if data else 0
    for c, v in data.items():
        if len(v) != n:
            raise ValueError(f"column {c} has {len(v)} values, expected {n}")
    return Lazy(n, lambda a, b: {c: v.slice(a, b - a) for c, v in data.items()})


def write_table(out_dir: Path, file_name: str, table: str | None, year: int | None, data,
                profile: Profile, corrupt: list[tuple[int, str]] | None = None, sep: str = ";",
                columns: list[str] | None = None) -> dict:
    """Write one delivery file. `data` maps column -> string array (all the same length), or is a
    `Lazy`; columns are written in the table's schema order (or `columns` order for files without
    schema). `corrupt` lists (row, reason) with reason `wrong_column_count` or `bad_<kind>:<COLUMN>`
    (the row is quarantined), or `nulled:bad_<kind>:<COLUMN>` (an unreadable value in a column that is
    not a rule column: ingest nulls the cell and keeps the row).
    Returns the manifest entry {table, year, rows, quarantine, nulled}."""
    t0 = time.monotonic()
    src = _as_lazy(data)
    n = src.n
    names = list(src.make(0, 0).keys())
    if table is not None:
        unknown = [c for c in names if c not in schemas.fields(table)]
        if unknown:
            raise KeyError(f"{table}: columns not in schema: {unknown}")
        cols = [c for c in schemas.order(table) if c in names]
        text_cols = [c for c in cols if schemas.kind(table, c) == "string"]
    else:
        cols = list(columns or names)
        text_cols = cols
    header = [("NUM_ENQ" if (profile.id_column == "NUM_ENQ" and c in schemas.PATIENT_COLUMNS) else c) for c in cols]
    # value layouts of the variants: integers written as decimals, decimal commas
    recast = {}
    if table is not None:
        for c in cols:
            k = schemas.kind(table, c)
            if k == "integer" and profile.has("float_ints"):
                recast[c] = _float_int
            elif k == "number" and profile.has("decimal_comma"):
                recast[c] = _decimal_comma

    corrupt = sorted(corrupt or [])
    by_reason: dict[str, int] = {}
    nulled: dict[str, int] = {}
    bad_values: dict[str, list[tuple[int, str]]] = {}
    wrong_count: list[int] = []
    for serial, (row, reason) in enumerate(corrupt):
        if reason == "wrong_column_count":
            by_reason[reason] = by_reason.get(reason, 0) + 1
            wrong_count.append(row)
            continue
        nulled_cell = reason.startswith("nulled:")
        kind, col = reason.removeprefix("nulled:")[len("bad_"):].split(":", 1)
        if schemas.reason_kind(table, col) != kind:
            raise ValueError(f"{file_name}: reason {reason} but {col} is {schemas.reason_kind(table, col)}")
        if nulled_cell:
            if col not in cols:  # a column this delivery does not carry: nothing to write
                continue
            nulled[f"{col}|bad_{kind}"] = nulled.get(f"{col}|bad_{kind}", 0) + 1
        else:
            by_reason[reason] = by_reason.get(reason, 0) + 1
        bad_values.setdefault(col, []).append((row, _bad_token(profile, table, col, serial)))
    rows_seen = [r for r, _ in corrupt]
    if len(set(rows_seen)) != len(rows_seen):
        raise ValueError(f"{file_name}: a corrupted row has two faults")
    enc = profile.codec
    eol = profile.eol

    def chunk_bytes(start: int) -> bytes:
        stop = min(n, start + CHUNK_ROWS)
        m = stop - start
        got = src.make(start, stop)
        parts = []
        for c in cols:
            arr = got[c]
            if len(arr) != m:
                raise ValueError(f"{file_name}: column {c} has {len(arr)} values in rows {start}-{stop}")
            if c in text_cols and m and pc.any(pc.match_substring_regex(arr, '[;,"\\n\\r]' if sep == "," else '[;"\\n\\r]')).as_py():
                raise ValueError(f"{file_name}: column {c} has values containing the separator, a quote or a line break")
            if c in recast and m:
                arr = recast[c](arr)
            hits = sorted((r - start, v) for r, v in bad_values.get(c, []) if start <= r < stop)
            if hits:
                mask = np.zeros(m, dtype=bool)
                mask[[h[0] for h in hits]] = True
                arr = pc.replace_with_mask(arr, pa.array(mask), pa.array([h[1] for h in hits], pa.string()))
            parts.append(arr)
        lines = pc.binary_join_element_wise(*parts, sep, null_handling="replace", null_replacement="")
        hits = sorted(r - start for r in wrong_count if start <= r < stop)
        if hits:
            mask = np.zeros(m, dtype=bool)
            mask[hits] = True
            new = []
            for r in hits:
                fields = lines[r].as_py().split(sep)
                # one field too few (drop the last) or one too many (repeat the last), alternately
                fields = fields[:-1] if (r + start) % 2 == 0 and len(fields) > 1 else fields + [fields[-1]]
                new.append(sep.join(fields))
            lines = pc.replace_with_mask(lines, pa.array(mask), pa.array(new, pa.string()))
        lines = pc.binary_join_element_wise(lines, "", eol)
        off = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
        b = bytes(memoryview(lines.buffers()[2])[off[0]:off[-1]])
        if enc != "utf-8" and not b.isascii():
            b = b.decode("utf-8").encode(enc)
        return b

    path = out_dir / file_name
    with open(path, "wb") as fh:
        if profile.bom:
            fh.write(UTF8_BOM)
        fh.write((sep.join(header) + eol).encode(enc))
        starts = list(range(0, n, CHUNK_ROWS))
        if len(starts) > 1:
            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                for b in pool.map(chunk_bytes, starts):
                    fh.write(b)
        else:
            for st in starts:
                fh.write(chunk_bytes(st))
    entry = {"table": table, "year": None if year is None else int(year), "rows": int(n),
             "quarantine": dict(sorted(by_reason.items()))}
    if nulled:
        entry["nulled"] = dict(sorted(nulled.items()))
    secs = time.monotonic() - t0
    profile.log.append((file_name, n, secs))
    if not profile.quiet:
        print(f"  wrote {file_name:<18} {n:>10} rows {secs:6.2f} s", file=sys.stderr)
    return entry
