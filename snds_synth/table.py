"""A minimal columnar container (dict of equal-length numpy arrays)."""

from __future__ import annotations

import numpy as np


class Cols:
    def __init__(self, **cols):
        self.c = {k: np.asarray(v) for k, v in cols.items()}
        lens = {len(v) for v in self.c.values()}
        if len(lens) > 1:
            raise ValueError(f"columns of unequal length: { {k: len(v) for k, v in self.c.items()} }")

    @property
    def n(self) -> int:
        return len(next(iter(self.c.values()))) if self.c else 0

    def __getitem__(self, k):
        return self.c[k]

    def __setitem__(self, k, v):
        v = np.asarray(v)
        if v.ndim == 0:
            v = np.full(self.n, v)
        if self.c and len(v) != self.n:
            raise ValueError(f"column {k}: {len(v)} values for {self.n} rows")
        self.c[k] = v

    def __contains__(self, k):
        return k in self.c

    def take(self, idx) -> "Cols":
        return Cols(**{k: v[idx] for k, v in self.c.items()})

    @staticmethod
    def concat(parts: list["Cols"], fill: dict | None = None) -> "Cols":
        """Concatenate; a column missing from a part takes `fill[col]` there."""
        fill = fill or {}
        parts = [p for p in parts if p.n > 0] or parts[:1]
        keys = []
        for p in parts:
            for k in p.c:
                if k not in keys:
                    keys.append(k)
        out = {}
        for k in keys:
            arrs = []
            for p in parts:
                if k in p.c:
                    arrs.append(p.c[k])
                else:
                    if k not in fill:
                        raise KeyError(f"column {k} missing from a part and has no fill value")
                    ref = next(q.c[k] for q in parts if k in q.c)
                    arrs.append(np.full(p.n, fill[k], dtype=ref.dtype))
            out[k] = np.concatenate(arrs)
        return Cols(**out)


def _composite(keys) -> np.ndarray | None:
    """One int64 key encoding the integer key columns (same order), or None if it would overflow."""
    total = 1
    parts = []
    for k in keys:
        k = np.asarray(k)
        if k.dtype.kind not in "iub":
            return None
        k = k.astype(np.int64)
        lo = int(k.min()) if len(k) else 0
        span = (int(k.max()) - lo + 1) if len(k) else 1
        total *= span
        if total >= 2**62:
            return None
        parts.append((k - lo, span))
    out = np.zeros(len(parts[0][0]), dtype=np.int64)
    for k, span in parts:
        out = out * span + k
    return out


def _lexsorted_starts(keys, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The (stable) row order sorting by the keys, and which sorted rows start a new key combination."""
    order = np.lexsort(tuple(reversed(keys)))
    starts = np.zeros(n, dtype=bool)
    starts[0] = True
    for k in keys:
        ks = np.asarray(k)[order]
        starts[1:] |= ks[1:] != ks[:-1]
    return order, starts


def first_of_groups(*keys) -> np.ndarray:
    """Indices (sorted) of the first row of every distinct combination of keys (stable)."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    comp = _composite(keys)
    if comp is not None:
        _, first = np.unique(comp, return_index=True)
        return np.sort(first)
    order, starts = _lexsorted_starts(keys, n)
    return np.sort(order[starts])


def group_ids(*keys) -> tuple[np.ndarray, int]:
    """Dense group id per row (groups numbered in order of first appearance)."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    comp = _composite(keys)
    if comp is not None:
        _, first, inv = np.unique(comp, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        return rank[inv.ravel()], len(first)
    order, starts = _lexsorted_starts(keys, n)
    gid_sorted = np.cumsum(starts) - 1
    gid = np.empty(n, dtype=np.int64)
    gid[order] = gid_sorted
    first = np.full(gid_sorted[-1] + 1, n, dtype=np.int64)
    np.minimum.at(first, gid, np.arange(n))
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[gid], len(first)


def rank_in_group(gid: np.ndarray) -> np.ndarray:
    """0-based position of each row within its group, in row order."""
    n = len(gid)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(gid, kind="stable")
    g = gid[order]
    start = np.ones(n, dtype=bool)
    start[1:] = g[1:] != g[:-1]
    idx = np.arange(n)
    first_pos = np.maximum.accumulate(np.where(start, idx, 0))
    r = np.empty(n, dtype=np.int64)
    r[order] = idx - first_pos
    return r
