"""Vectorised value formatting: numpy arrays in, pyarrow string arrays out.

Dates are int64 day numbers (days since 1970-01-01, as numpy datetime64[D]); `NULL_DAY` marks a
missing date. Amounts are int64 cents. Every helper returns a `pa.StringArray` (nulls = empty fields).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NULL_DAY = np.int64(-(2**40))
MONTHS = np.array(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])


def day(s: str) -> int:
    """'2019-03-05' -> day number."""
    return int(np.datetime64(s, "D").astype(np.int64))


FIRST_DAY = day("1600-01-01")
LAST_DAY = day("2040-12-31")
PLACEHOLDER_DEATH = day("1600-01-01")


def ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(days, dtype="datetime64[D]")
    y = d.astype("datetime64[Y]").astype(np.int64) + 1970
    m_ = d.astype("datetime64[M]")
    m = m_.astype(np.int64) % 12 + 1
    dd = (d - m_.astype("datetime64[D]")).astype(np.int64) + 1
    return y, m, dd


def from_ymd(y, m, d) -> np.ndarray:
    y = np.asarray(y, dtype=np.int64)
    m = np.asarray(m, dtype=np.int64)
    months = (y - 1970) * 12 + (m - 1)
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    return first + np.asarray(d, dtype=np.int64) - 1


def month_start(days: np.ndarray) -> np.ndarray:
    return np.asarray(days, dtype="datetime64[D]").astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def add_months(days_first_of_month: np.ndarray, k) -> np.ndarray:
    m = np.asarray(days_first_of_month, dtype="datetime64[D]").astype("datetime64[M]").astype(np.int64) + k
    return m.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


class _DateTables:
    """One string per day of [1600-01-01, 2040-12-31], per layout, built once (vectorised)."""

    def __init__(self) -> None:
        self._cache: dict[str, pa.Array] = {}

    def get(self, layout: str) -> pa.Array:
        if layout not in self._cache:
            self._cache[layout] = self._build(layout)
        return self._cache[layout]

    def _build(self, layout: str) -> pa.Array:
        days = np.arange(FIRST_DAY, LAST_DAY + 1, dtype=np.int64)
        iso = pa.array(np.datetime_as_string(days.astype("datetime64[D]"), unit="D"))
        yyyy = pc.utf8_slice_codeunits(iso, 0, 4)
        mm = pc.utf8_slice_codeunits(iso, 5, 7)
        dd = pc.utf8_slice_codeunits(iso, 8, 10)
        if layout == "iso":
            return iso
        if layout == "dmy":
            return pc.binary_join_element_wise(dd, mm, yyyy, "/")
        if layout == "dmy8":
            return pc.binary_join_element_wise(dd, mm, yyyy, "")
        if layout == "sas":
            _, m, _ = ymd(days)
            mon = pa.array(MONTHS).take(pa.array(m - 1))
            return pc.binary_join_element_wise(dd, mon, yyyy, ":00:00:00", "")
        if layout == "ym":
            return pc.binary_join_element_wise(yyyy, mm, "")
        if layout == "my":
            return pc.binary_join_element_wise(mm, yyyy, "")
        if layout == "y":
            return yyyy
        if layout == "m":
            return mm
        raise ValueError(layout)


DATES = _DateTables()


def s_date(days, layout: str) -> pa.Array:
    days = np.asarray(days, dtype=np.int64)
    null = days == NULL_DAY
    idx = np.where(null, 0, days - FIRST_DAY)
    if idx.size and (idx.min() < 0 or idx.max() > LAST_DAY - FIRST_DAY):
        raise ValueError("date out of the supported range 1600-2040")
    return DATES.get(layout).take(pa.array(idx, mask=null if null.any() else None))


def s_int(a, null=None) -> pa.Array:
    a = np.asarray(a, dtype=np.int64)
    if null is not None and not np.any(null):
        null = None
    return pa.array(a, mask=null).cast(pa.string())


def s_zero_pad(a, width: int, null=None) -> pa.Array:
    return pc.utf8_lpad(s_int(a, null), width, "0")


def s_fixed(a_scaled, decimals: int, null=None) -> pa.Array:
    """Integer `a_scaled` = value * 10**decimals -> '-12.50' style text."""
    a = np.asarray(a_scaled, dtype=np.int64)
    scale = 10**decimals
    neg = a < 0
    ab = np.abs(a)
    whole = s_int(ab // scale)
    frac = pc.utf8_lpad(s_int(ab % scale), decimals, "0")
    sign = pa.array(np.where(neg, "-", ""))
    out = pc.binary_join_element_wise(sign, whole, ".", frac, "")
    if null is not None and np.any(null):
        out = pc.if_else(pa.array(null), pa.nulls(len(a), pa.string()), out)
    return out


def s_cents(a, null=None) -> pa.Array:
    return s_fixed(a, 2, null)


def s_take(labels, idx, null=None) -> pa.Array:
    """labels[idx] (labels: sequence or pa.Array of strings)."""
    if not isinstance(labels, pa.Array):
        labels = pa.array(list(labels), pa.string())
    idx = np.asarray(idx, dtype=np.int64)
    if null is not None and not np.any(null):
        null = None
    return labels.take(pa.array(idx, mask=null))


def s_const(value: str | None, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n, pa.string())
    return pa.repeat(pa.scalar(value, pa.string()), n)


def s_str(values) -> pa.Array:
    """numpy unicode array (or list) -> pa string array; '' stays '' (use s_null_empty for nulls)."""
    return pa.array(np.asarray(values).astype(str), pa.string())


def s_null_empty(arr: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(arr, ""), pa.nulls(len(arr), pa.string()), arr)
