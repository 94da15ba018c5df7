"""Delivery variants: the ways real CNAM / Health Data Hub extracts differ from the native delivery.

A variant changes how the delivery is written (names, layouts, encoding, extra files) or which
sources it holds; a profile is a preset list of variants. The world is the same whatever the variants
(every random draw of a variant comes from a generator of its own, `Profile.rng`), so a variant
delivery is the native delivery of the same seed written another way; the truth follows it where
RULES.md says the result differs (chaining codes a table lacks, stays admitted before the window,
absent sources). See docs/synthetic-data.md, "Delivery variants".
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import pmsi as P
from .fmt import day, s_date, s_null_empty, s_take
from .world import Patients, Period

#: name -> what it changes (one line; docs/synthetic-data.md has the details)
VARIANTS = {
    "num_enq": "the patient column is NUM_ENQ in every table (BEN_NIR_PSA / NIR_ANO_17 renamed)",
    "sas_datetimes": "PMSI EXE_SOI_DTD/DTF as SAS datetimes ddMMMyyyy:HH:mm:ss, ENT_DAT/SOR_DAT as ddMMyyyy, in every PMSI table",
    "iso_dates": "DCIR / IR_* / KI_* / REF_* plain dates as yyyy-MM-dd",
    "latin1": "files encoded ISO-8859-1, free-text labels with accents",
    "cp1252": "files encoded Windows-1252, free-text labels with accents and 0x80-0x9F characters",
    "crlf_bom": "CRLF line ends, and a UTF-8 byte-order mark when the encoding is UTF-8",
    "crlf": "CRLF line ends",
    "bom": "a UTF-8 byte-order mark at the start of each file (UTF-8 only)",
    "float_ints": "integer-typed fields written as decimals (61.0)",
    "return_codes3": "3-character return codes (GRG_RET '000'), letters in GHS_NUM ('D11'), T_SSRaaB.MOI_ANN as MMyyyy",
    "decimal_comma": "number-typed fields with a decimal comma (12,50)",
    "extra_tables": "catalogued tables the model does not use: T_SSRaaCSARR, T_HADaaA, T_MCOaaFCSTC, ER_ARO_F",
    "uncatalogued": "one file matching no catalogued table (ETUDE_CONSENTEMENT.csv) with raw patient identifiers",
    "chaining_missing_codes": "T_SSRaaC delivered without FHO_RET and PMS_RET (the truth keeps stays whose only bad code was one of them)",
    "admitted_before_window": "some first-year MCO/SSR/HAD stays admitted in December of the previous year (kept)",
    "dcir_only": "only DCIR (ER_*) and referential (IR_*, KI_*, REF_*) tables",
    "pmsi_only": "only PMSI (T_*) tables",
    "referential_only": "only IR_* and KI_* tables",
}

#: presets (a profile name stands for its list of variants)
PROFILES = {
    "native": (),
    "cnam_study": ("num_enq", "sas_datetimes", "cp1252", "crlf_bom", "float_ints", "return_codes3", "decimal_comma",
                   "extra_tables", "uncatalogued", "chaining_missing_codes", "admitted_before_window"),
}

#: at most one variant of each group
EXCLUSIVE = (("dcir_only", "pmsi_only", "referential_only"), ("latin1", "cp1252"))
SOURCE_VARIANTS = ("dcir_only", "pmsi_only", "referential_only")

#: The source families of a delivery: ER_* (DCIR), IR_BEN_R, IR_IMB_R, IR_PHA_R, KI_* (KI), REF_ATC_DDD
#: (REF), T_* (PMSI). The uncatalogued file is no family (always written under `uncatalogued`).
ALL_SOURCES = frozenset({"DCIR", "IR_BEN_R", "IR_IMB_R", "IR_PHA_R", "KI", "REF", "PMSI"})
DELIVERED = {
    None: ALL_SOURCES,
    "dcir_only": ALL_SOURCES - {"PMSI"},
    "pmsi_only": frozenset({"PMSI"}),
    "referential_only": frozenset({"IR_BEN_R", "IR_IMB_R", "IR_PHA_R", "KI"}),
}
#: a variant that acts on one of these families only is refused when none of them is delivered
NEEDS = {
    "sas_datetimes": {"PMSI"}, "return_codes3": {"PMSI"}, "chaining_missing_codes": {"PMSI"},
    "admitted_before_window": {"PMSI"}, "iso_dates": {"DCIR", "IR_BEN_R", "KI", "REF"},
    "extra_tables": {"DCIR", "PMSI"}, "decimal_comma": {"DCIR", "PMSI"},
}


class VariantError(ValueError):
    pass


def parse_list(text) -> list[str]:
    """'a,b, c' (or a list) -> ['a', 'b', 'c']."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    return [s.strip() for s in items if s and s.strip()]


def resolve(profile: str | None, variants, dcir_dates: str = "dmy", encoding: str = "utf-8",
            id_column: str = "BEN_NIR_PSA") -> tuple[str | None, frozenset]:
    """The effective variant set of a profile, a variant list and the legacy options (dcir_dates='iso' is
    iso_dates, encoding='latin-1' latin1, id_column='NUM_ENQ' num_enq). Returns (profile name to record,
    variants); raises VariantError naming what is unknown or incompatible."""
    names = parse_list(variants)
    if profile is not None and profile not in PROFILES:
        raise VariantError(f"unknown profile {profile!r}; known profiles: {', '.join(sorted(PROFILES))}")
    unknown = sorted({v for v in names if v not in VARIANTS})
    if unknown:
        raise VariantError(f"unknown variant(s): {', '.join(unknown)}; known variants: {', '.join(VARIANTS)}")
    chosen = set(PROFILES.get(profile, ())) | set(names)
    if dcir_dates == "iso":
        chosen.add("iso_dates")
    if encoding == "latin-1":
        chosen.add("latin1")
    elif encoding == "cp1252":
        chosen.add("cp1252")
    if id_column == "NUM_ENQ":
        chosen.add("num_enq")
    for group in EXCLUSIVE:
        both = [v for v in group if v in chosen]
        if len(both) > 1:
            raise VariantError(f"incompatible variants: {' + '.join(both)} (at most one of {', '.join(group)})")
    if "bom" in chosen and ({"latin1", "cp1252"} & chosen):
        enc = "latin1" if "latin1" in chosen else "cp1252"
        raise VariantError(f"incompatible variants: bom + {enc} (a byte-order mark is for UTF-8 files only; "
                           "crlf_bom writes no mark on non-UTF-8 files)")
    delivered = sources(chosen)
    for v, fams in NEEDS.items():
        if v in chosen and not (fams & delivered):
            only = next(s for s in SOURCE_VARIANTS if s in chosen)
            raise VariantError(f"incompatible variants: {v} + {only} ({v} changes tables that {only} does not deliver)")
    name = profile if profile is not None else ("native" if not chosen else None)
    return name, frozenset(chosen)


def sources(variants) -> frozenset:
    only = [s for s in SOURCE_VARIANTS if s in variants]
    return DELIVERED[only[0] if only else None]


def family(table: str) -> str:
    """The source family of a catalogued table."""
    if table.startswith("T_"):
        return "PMSI"
    if table.startswith("ER_"):
        return "DCIR"
    if table.startswith("KI_"):
        return "KI"
    if table.startswith("REF_"):
        return "REF"
    return table  # IR_BEN_R, IR_IMB_R, IR_PHA_R


def effective_options(variants) -> tuple[str, str, str]:
    """(dcir_dates, encoding, id_column) of a variant set."""
    return ("iso" if "iso_dates" in variants else "dmy",
            "latin-1" if "latin1" in variants else "cp1252" if "cp1252" in variants else "utf-8",
            "NUM_ENQ" if "num_enq" in variants else "BEN_NIR_PSA")


# ================================================================================== the world
ADMITTED_BEFORE_SHARE = 0.05
GHS_LETTER_SHARE = 0.02
GHS_LETTER_CODES = np.array(["D11", "D12", "D13", "D21", "D22"])
MISSING_CHAINING_CODES = ("FHO_RET", "PMS_RET")  # chaining_missing_codes: absent from T_SSRaaC


def apply_world(pm: P.Pmsi, p: Patients, period: Period, profile) -> dict:
    """Variants that change the PMSI stays (in place): chaining_missing_codes, admitted_before_window,
    return_codes3 (letters in GHS_NUM). Returns counts for the manifest."""
    st = pm.stays
    info = {}
    if profile.has("chaining_missing_codes"):
        # RULES.md: the chaining filter keeps a stay whose codes are all '0'; a table without FHO_RET / PMS_RET
        # is judged on the codes it has, so a stay whose only bad code was one of them is a kept (world) stay.
        cols = [P.CHAINING_COLUMNS.index(c) for c in MISSING_CHAINING_CODES]
        chain = np.flatnonzero((st["src"] == P.SSR) & (st["role"] == P.ROLE_CHAINING))
        missing = np.isin(st["chain_col"][chain], cols)
        # so that the variant shows: at least one SSR chaining stay whose bad code is one the table lacks, and
        # (2+ chaining stays) at least one whose bad code it has; the code is the variant's own draw
        rng = profile.rng("chaining_missing_codes")
        chain_col = st["chain_col"].copy()
        if len(chain) and not missing.any():
            chain_col[chain[rng.integers(0, len(chain))]] = cols[int(rng.integers(0, len(cols)))]
        elif len(chain) >= 2 and missing.all():
            others = [j for j in range(len(P.CHAINING_COLUMNS)) if j not in cols]
            chain_col[chain[rng.integers(0, len(chain))]] = others[int(rng.integers(0, len(others)))]
        st["chain_col"] = chain_col
        m = (st["src"] == P.SSR) & (st["role"] == P.ROLE_CHAINING) & np.isin(st["chain_col"], cols)
        role = st["role"].copy()
        role[m] = P.ROLE_WORLD
        st["role"] = role
        info["chaining_missing_codes_kept_stays"] = int(m.sum())
    if profile.has("admitted_before_window"):
        rng = profile.rng("admitted_before_window")
        jan1 = period.start
        dec1 = day(f"{period.y1 - 1}-12-01")
        cand = ((st["role"] == P.ROLE_WORLD) & np.isin(st["src"], [P.MCO, P.SSR, P.HAD]) & (st["year"] == period.y1)
                & (st["dcir_line"] < 0) & ~st["death_stay"] & (st["los"] >= 1) & (p.birth[st["pid"]] < dec1)
                & (st["copy_of"] < 0))
        chosen = []
        for s_i in (P.MCO, P.SSR, P.HAD):
            pool = np.flatnonzero(cand & (st["src"] == s_i))
            k = max(1, int(round(ADMITTED_BEFORE_SHARE * len(pool)))) if len(pool) else 0
            chosen.append(np.sort(rng.permutation(pool)[:k]))
        chosen = np.concatenate(chosen)
        los = st["los"][chosen]
        lo = np.maximum(dec1, jan1 - los)  # discharged on or after 1 January: filed in the first year
        new_start = lo + np.floor(rng.random(len(chosen)) * (jan1 - lo)).astype(np.int64)
        shift = np.zeros(st.n, np.int64)
        shift[chosen] = new_start - st["start"][chosen]
        copies = st["copy_of"] >= 0
        shift[copies] = shift[st["copy_of"][copies]]  # geographic and malformed copies keep their stay's dates
        st["start"] = st["start"] + shift
        st["end"] = st["end"] + shift
        if np.any(st["year"] != np.asarray(st["end"], dtype="datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970):
            raise AssertionError("a stay admitted before the window left its discharge year")
        info["admitted_before_window"] = {s: int(np.sum(st["src"][chosen] == i)) for i, s in enumerate(P.SOURCES) if i != P.RIP}
    if profile.has("return_codes3"):
        rng = profile.rng("return_codes3")
        pool = np.flatnonzero((st["src"] == P.MCO) & (st["role"] == P.ROLE_WORLD) & (st["ghs"] > 0))
        k = max(1, int(round(GHS_LETTER_SHARE * len(pool)))) if len(pool) else 0
        letter = np.full(st.n, -1)
        pick = rng.permutation(pool)[:k]
        letter[pick] = rng.integers(0, len(GHS_LETTER_CODES), len(pick))
        copies = st["copy_of"] >= 0
        letter[copies] = letter[st["copy_of"][copies]]
        st["ghs_letter"] = letter
    return info


# ================================================================================== uncatalogued file
UNCATALOGUED_FILE = "ETUDE_CONSENTEMENT.csv"
CONSENT_STATUS = np.array(["accepté", "accepté", "accepté", "refusé", "retiré"])
COMMENTS = {
    "apostrophe": np.array(["", "recueilli lors de la consultation d’inclusion", "recueilli par l’infirmière de recherche",
                            "accord des représentants légaux (patient mineur)", "retrait signalé par courrier – à archiver",
                            "", "deuxième lettre d’information envoyée"]),
    "plain": np.array(["", "recueilli lors de la consultation d'inclusion", "recueilli par l'infirmière de recherche",
                       "accord des représentants légaux (patient mineur)", "retrait signalé par courrier - à archiver",
                       "", "deuxième lettre d'information envoyée"]),
}


def uncatalogued(p: Patients, period: Period, profile) -> tuple[dict, list[str]]:
    """ETUDE_CONSENTEMENT.csv: a study's consent register (no SNDS table): the patient column with the raw
    identifiers (BEN_NIR_PSA, NUM_ENQ under num_enq), a date, a status and a free-text comment."""
    rng = profile.rng("uncatalogued")
    k = max(5, p.n // 5)
    pid = np.sort(rng.choice(p.n, size=min(k, p.n), replace=False))
    k = len(pid)
    start = np.maximum(p.birth[pid], period.start - 365)
    date = start + np.floor(rng.random(k) * (period.start + 180 - start)).astype(np.int64)
    layout = "iso" if profile.dcir_dates == "iso" else "dmy"
    texts = COMMENTS["plain" if profile.encoding == "latin-1" else "apostrophe"]
    data = {
        "BEN_NIR_PSA": pa.array(p.psa[pid].astype(str)),
        "DAT_CONSENTEMENT": s_date(date, layout),
        "STATUT": s_take(CONSENT_STATUS, rng.integers(0, len(CONSENT_STATUS), k)),
        "COMMENTAIRE": s_take(texts, rng.integers(0, len(texts), k)),
        "VERSION_NOTICE": s_take(np.array(["v1", "v2", "v2-bis"]), rng.integers(0, 3, k)),
    }
    data["COMMENTAIRE"] = s_null_empty(data["COMMENTAIRE"])
    return data, list(data)
