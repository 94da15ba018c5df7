"""Orchestration: build the world, render it into a CNAM-like delivery, write the ground truth."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from snds_operators.landing import write_manifest

from . import __version__
from . import ace as ace_mod
from . import codes as codes_mod
from . import dcir as D
from . import drugs as drugs_mod
from . import pmsi as P
from . import render, truth, world
from . import variants as V
from .table import Cols
from .writer import Profile, write_table

DCIR_RULES = ("dcir_for_information", "dcir_for_information_strict", "dcir_bse_prs_nat_0", "dcir_ete_ind_taa_1",
              "dcir_regularisation")
PMSI_RULES = ("pmsi_bad_chaining", "pmsi_placeholder_nir", "pmsi_geographic_finess_duplicate", "mco_error_ghm",
              "ssr_error_gme", "had_error_ghpc", "mco_ghs_9999")
ALL_RULES = DCIR_RULES + PMSI_RULES


class GeneratorError(RuntimeError):
    pass


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise GeneratorError(f"{out} exists and is not a directory")
        if any(out.iterdir()) and not (out / "_truth" / "manifest.json").is_file():
            raise GeneratorError(
                f"refusing to wipe {out}: it is not empty and holds no _truth/manifest.json "
                "(not a previous output of snds_synth); choose an empty or new directory")
        shutil.rmtree(out)
    out.mkdir(parents=True)


def generate(out_dir, n: int = 2000, seed: int = 42, years: tuple[int, int] = (2019, 2021), dcir_dates: str = "dmy",
             encoding: str = "utf-8", id_column: str = "BEN_NIR_PSA", quiet: bool = False, variants=None,
             profile: str | None = None) -> dict:
    """Write a synthetic SNDS delivery into `out_dir` (wiped first) and return the truth manifest.

    `variants` (a list or 'a,b,c') and `profile` (a preset list of variants, snds_synth.variants.PROFILES)
    choose how the delivery is written (docs/synthetic-data.md, "Delivery variants"); `dcir_dates='iso'`,
    `encoding='latin-1'` and `id_column='NUM_ENQ'` are the variants iso_dates, latin1 and num_enq."""
    y1, y2 = int(years[0]), int(years[1])
    if not (2008 <= y1 <= y2 <= 2030):
        raise GeneratorError(f"years must satisfy 2008 <= y1 <= y2 <= 2030, got {y1}-{y2}")
    if n < 50:
        raise GeneratorError("n must be at least 50")
    if dcir_dates not in ("dmy", "iso"):
        raise GeneratorError("dcir_dates must be dmy or iso")
    enc = encoding.lower().replace("_", "-")
    if enc in ("latin1", "iso-8859-1"):
        enc = "latin-1"
    if enc in ("windows-1252", "cp-1252"):
        enc = "cp1252"
    if enc not in ("utf-8", "latin-1", "cp1252"):
        raise GeneratorError("encoding must be utf-8, latin-1 or cp1252")
    if id_column not in ("BEN_NIR_PSA", "NUM_ENQ"):
        raise GeneratorError("id_column must be BEN_NIR_PSA or NUM_ENQ")
    try:
        profile_name, vset = V.resolve(profile, variants, dcir_dates, enc, id_column)
    except V.VariantError as exc:
        raise GeneratorError(str(exc)) from None
    dcir_dates, enc, id_column = V.effective_options(vset)
    delivered = V.sources(vset)
    out = Path(out_dir)
    _prepare_out(out)
    t0 = time.monotonic()
    profile = Profile(dcir_dates=dcir_dates, encoding=enc, id_column=id_column, quiet=quiet, variants=vset, seed=seed)

    def log(msg):
        if not quiet:
            print(f"[snds_synth {time.monotonic() - t0:6.1f} s] {msg}", file=sys.stderr)

    rng = np.random.default_rng(seed)
    period = world.Period(y1, y2)
    codes = codes_mod.load()
    prov = world.make_providers(rng, n, codes)
    pats = world.make_patients(rng, n, period, codes, len(prov.idx["GP"]), len(prov.idx["PHA"]))
    drugs = drugs_mod.make_drugs(rng, codes, n)
    log(f"world: {n} beneficiaries, {int(pats.dead.sum())} deaths, {len(pats.ald_pid)} ALDs, years {y1}-{y2}")
    d = D.build(rng, period, pats, prov, drugs, codes)
    log(f"DCIR: {d.lines.n} ER_PRS_F lines")
    ex = D.exposure(pats, period, codes)
    L = d.lines
    cl = np.flatnonzero((L["cat"] == D.CAT_ETAB) & (L["role"] == D.ROLE_WORLD))
    clinic = Cols(pid=L["pid"][cl].astype(np.int64), dtd=L["dtd"][cl].astype(np.int64), dtf=L["dtf"][cl].astype(np.int64),
                  etab=L["etab"][cl].astype(np.int64), line=cl)
    pm = P.build(rng, period, pats, codes, ex, clinic)
    log(f"PMSI: {pm.stays.n} stays ({clinic.n} private clinic MCO stays)")
    ace = ace_mod.build(rng, period, pats, codes, ex)
    log(f"ACE: {ace.visits.n} outpatient hospital visits")
    # variants changing the world's stays (their own random draws: the world above is the native one)
    variant_counts = V.apply_world(pm, pats, period, profile)
    st = pm.stays
    pm.counts["geographic_finess_kept"] = {
        P.SOURCES[s]: int(np.sum((st["role"] == P.ROLE_WORLD) & st["geo_kept"] & (st["src"] == s))) for s in range(3)}
    if vset:
        log(f"variants: {', '.join(sorted(vset))}")

    # every table is rendered (the world's random draws do not depend on what is delivered), then only
    # the delivered source families are written
    files_dcir, _ = render.render_dcir(rng, d, pats, prov, drugs, codes, period, profile)
    files_pmsi, pmsi_info = render.render_pmsi(rng, pm, pats, codes, period, profile)
    files_ace, ace_info = render.render_ace(ace, pats, codes, period, profile)
    files_refs, refs_info = render.render_refs(rng, pats, drugs, codes, period, profile)
    manifest_files = {}
    for fname, fd in {**files_dcir, **files_refs, **files_pmsi, **files_ace}.items():
        if V.family(fd.table) in delivered:
            manifest_files[fname] = write_table(out, fname, fd.table, fd.year, fd.data, profile, fd.corrupt)
    has_dcir, has_pmsi = "DCIR" in delivered, "PMSI" in delivered
    # per-file cleaning counts
    pf = {**pmsi_info["per_file_cleaning"], **ace_info["per_file_cleaning"]}
    if has_dcir:
        manifest_files["ER_PRS_F.csv"]["cleaning"] = {r: int(d.counts[r]) for r in DCIR_RULES}
    for fname, entry in manifest_files.items():
        if fname in pf:
            entry["cleaning"] = pf[fname]
        entry.setdefault("cleaning", {})
    uncatalogued = []
    if profile.has("uncatalogued"):
        data, columns = V.uncatalogued(pats, period, profile)
        e = write_table(out, V.UNCATALOGUED_FILE, None, None, data, profile, columns=columns)
        manifest_files[V.UNCATALOGUED_FILE] = {**e, "cleaning": {}, "catalogued": False}
        uncatalogued.append(V.UNCATALOGUED_FILE)

    # cleaning: rows removed per rule and table = the sum of the per-file counts
    cleaning = {r: {} for r in ALL_RULES}
    for r in DCIR_RULES:
        if has_dcir:
            cleaning[r]["ER_PRS_F"] = int(d.counts[r])
    for fname, entry in sorted(manifest_files.items()):
        for r, k in entry["cleaning"].items():
            if r in PMSI_RULES and entry["table"] is not None:
                cleaning[r][entry["table"]] = cleaning[r].get(entry["table"], 0) + int(k)
    st, vis = pm.stays, ace.visits
    stays_removed = {}
    for r, role in (("pmsi_bad_chaining", P.ROLE_CHAINING), ("pmsi_placeholder_nir", P.ROLE_PLACEHOLDER),
                    ("pmsi_geographic_finess_duplicate", P.ROLE_GEO_COPY), ("error_group", P.ROLE_ERROR),
                    ("mco_ghs_9999", P.ROLE_GHS9999)):
        stays_removed[r] = {s: int(np.sum((st["role"] == role) & (st["src"] == i))) * has_pmsi for i, s in enumerate(P.SOURCES)}
        stays_removed[r]["ACE"] = int(np.sum(vis["role"] == role)) * has_pmsi
    # cross-check: the stay tables' counts are the stays' (SSR B: weeks)
    for i, s in enumerate(P.SOURCES if has_pmsi else ()):
        m = st["src"] == i
        ctab, btab = f"T_{s}aaC", ("T_RIPaaRSA" if s == "RIP" else f"T_{s}aaB")
        assert cleaning["pmsi_bad_chaining"].get(ctab, 0) == stays_removed["pmsi_bad_chaining"][s]
        assert cleaning["pmsi_placeholder_nir"].get(ctab, 0) == stays_removed["pmsi_placeholder_nir"][s]
        if s != "RIP":
            geo_rows = int(st["weeks"][m & (st["role"] == P.ROLE_GEO_COPY)].sum())
            assert cleaning["pmsi_geographic_finess_duplicate"].get(btab, 0) == geo_rows

    log("truth events")
    events, cost_exclusions = truth.build_events(pats, prov, drugs, codes, d, pm, ace, sources=delivered)
    tdir = out / "_truth" / "events"
    tdir.mkdir(parents=True)
    ev_counts = {}
    tprof = Profile(encoding="utf-8", quiet=True)
    for name, cols in events.items():
        e = write_table(tdir, f"{name}.csv", None, None, cols, tprof, sep=",", columns=truth.EVENT_COLUMNS[name])
        ev_counts[name] = e["rows"]

    dotted = {}
    for src in (pmsi_info["dotted_icd10"], refs_info["dotted_icd10"]):
        for k, v in src.items():
            if V.family(k) in delivered:
                dotted[k] = dotted.get(k, 0) + v
    geo_list = [str(f) for f, k in zip(codes.finess, codes.finess_kind) if k == "geo"]
    manifest = {
        "generator_version": __version__,
        "seed": seed,
        "n_beneficiaries": n,
        "years": [y1, y2],
        "dcir_dates": dcir_dates,
        "encoding": enc,
        "id_column": id_column,
        "profile": profile_name,
        "variants": sorted(vset),
        **({"sources": sorted(delivered)} if delivered != V.ALL_SOURCES else {}),
        **({"uncatalogued_files": uncatalogued} if uncatalogued else {}),
        **({"variant_counts": variant_counts} if variant_counts else {}),
        "geographic_finess": geo_list,
        "legal_entity_finess": {str(f): str(g) for f, k, g in zip(codes.finess, codes.finess_kind, codes.finess_group) if k == "legal"},
        "files": dict(sorted(manifest_files.items())),
        "cleaning": cleaning,
        "cleaning_stays": stays_removed,
        "regularisation": d.regul if has_dcir else {k: 0 for k in d.regul},
        "geographic_finess_kept_stays": pm.counts["geographic_finess_kept"] if has_pmsi else
        {k: 0 for k in pm.counts["geographic_finess_kept"]},
        "cost_exclusions": cost_exclusions,
        "dotted_icd10": dict(sorted(dotted.items())),
        "events": ev_counts,
        "patients": _patient_counts(events["patients"]),
        "quarantine_total": sum(sum(e["quarantine"].values()) for e in manifest_files.values()),
    }
    with open(out / "_truth" / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, ensure_ascii=False, default=_json_default)
        fh.write("\n")
    # Last, as a sender does: the checksum manifest of the delivery files (sha256sum format), which the
    # landing watch waits for (snds_operators.landing).
    write_manifest(out)
    rows = sum(e["rows"] for e in manifest_files.values())
    log(f"done: {len(manifest_files)} files, {rows} data lines, {sum(ev_counts.values())} truth events -> {out}")
    return manifest


def _patient_counts(patients: dict) -> dict:
    """n, deaths and incoherent deaths of the truth's `patients` table (every beneficiary in a delivery with
    IR_BEN_R; the patients of the events otherwise)."""
    return {"n": len(patients["patient_id"]), "deaths": len(patients["death_date"]) - patients["death_date"].null_count,
            "incoherent_deaths": int(np.sum(np.asarray(patients["incoherent_death"].to_numpy(zero_copy_only=False)) == "1"))}


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
