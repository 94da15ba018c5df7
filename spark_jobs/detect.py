"""Detect a delivery's profile from its headers and first lines (`PROFILE=auto`, `make detect`).

Senders write the same SNDS tables in different ways (separator, encoding, patient column, date
layouts, decimal commas: spark_jobs.profiles). Writing a profile by hand means opening tens of GB of
CSV; guessing wrong quarantines whole tables. So the delivery is read here only as far as needed to
decide: the first 64 KiB (at most 200 data lines) of each file, wherever it lies (local or s3://).
Every setting is decided from evidence in those samples, checked against the catalogue's schemas,
and the evidence is kept in the profile's `detected` section: counts, file, table and column names,
never a data value (the samples hold raw identifiers).

    python -m spark_jobs.detect --input DIR [--config config/ingest.yaml] > config/profiles/mine.yaml
"""

from __future__ import annotations

import argparse
import codecs
import datetime as dt
import logging
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from spark_jobs import lakefs
from spark_jobs.delivery import _STRPTIME_LAYOUTS, MANIFEST, DeliveryError, IngestConfig
from spark_jobs.lakefs import LakePath
from spark_jobs.profiles import AUTO, DATE_LAYOUTS, Profile, ProfileError, validate

log = logging.getLogger("snds.detect")

SAMPLE_BYTES = 64 * 1024
SAMPLE_LINES = 200
#: A header line longer than the sample is read up to this (never the whole file).
HEADER_BYTES = 1 << 20
SEPARATORS = (";", ",", "\t", "|")
#: Columns that stand for the native patient columns in every table (CNAM study extracts).
PATIENT_ALIASES = ("NUM_ENQ", "BEN_NIR_ANO")
NATIVE_PATIENT = ("BEN_NIR_PSA", "NIR_ANO_17")
DEFAULT_DATE_FORMATS = Profile(name=AUTO).date_formats
#: Years an 8-digit date is plausibly written with: tells ddMMyyyy from yyyyMMdd (01011600 is a date).
PLAUSIBLE_YEARS = range(1600, 2101)

_BOM = b"\xef\xbb\xbf"
_MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
# The layouts as sql/ingest/_parse.sql checks them: fixed positions, then a real calendar day.
_DATE_PATTERNS = {
    "dd/MM/yyyy": re.compile(r"(?P<d>\d{2})/(?P<m>\d{2})/(?P<y>\d{4})"),
    "yyyy-MM-dd": re.compile(r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})"),
    "ddMMyyyy": re.compile(r"(?P<d>\d{2})(?P<m>\d{2})(?P<y>\d{4})"),
    "yyyyMMdd": re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})"),
    "ddMMMyyyy:HH:mm:ss": re.compile(r"(?P<d>\d{2})(?P<m>[A-Za-z]{3})(?P<y>\d{4}):([01]\d|2[0-3]):[0-5]\d:[0-5]\d"),
    "ddMMMyyyy": re.compile(r"(?P<d>\d{2})(?P<m>[A-Za-z]{3})(?P<y>\d{4})"),
    "yyyy-MM-ddTHH:mm:ss": re.compile(
        r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})[T ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?Z?"),
}
assert set(_DATE_PATTERNS) == set(DATE_LAYOUTS)
_EIGHT_DIGITS = ("ddMMyyyy", "yyyyMMdd")
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")
_DECIMAL_POINT = re.compile(r"[+-]?\d*\.\d+")
# Bytes 0x80-0x9F that Windows-1252 leaves undefined.
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")


@dataclass
class _Sample:
    """The first bytes of one delivered file: its header and first complete data lines."""

    path: LakePath
    found: tuple[str, int | None] | None  # (table, year), None: uncatalogued
    data: bytes  # the sampled bytes, without the BOM (the last line may be cut)
    truncated: bool  # the file goes on past the sample
    bom: bool
    header: str = ""  # the first line, decoded as Latin-1 (column names are ASCII)
    line_ending: str = "none"  # crlf | lf | none (of the header line)
    lines: list[bytes] = field(default_factory=list)  # data lines, without line endings


def _read_head(path: LakePath, limit: int) -> tuple[bytes, bool]:
    """The first `limit` bytes of a file and whether it goes on beyond them (a bounded read)."""
    fs, p = lakefs.filesystem(path)
    with fs.open_input_stream(p) as fh:
        data = fh.read(limit + 1)
    return data[:limit], len(data) > limit


def _sample(path: LakePath, cfg: IngestConfig) -> _Sample | None:
    data, truncated = _read_head(path, SAMPLE_BYTES)
    if truncated and b"\n" not in data:
        data, truncated = _read_head(path, HEADER_BYTES)
    bom = data.startswith(_BOM)
    if bom:
        data = data[len(_BOM):]
    if not data.strip():
        return None
    s = _Sample(path=path, found=cfg.identify(path), data=data, truncated=truncated, bom=bom)
    first, newline, rest = data.partition(b"\n")
    s.line_ending = ("crlf" if first.endswith(b"\r") else "lf") if newline else "none"
    s.header = first.rstrip(b"\r").decode("latin-1")
    if not newline and truncated:
        return s  # a header longer than HEADER_BYTES: no data line
    if truncated:
        rest = rest[: rest.rfind(b"\n") + 1]  # the last line is cut: its values are left out
    for line in rest.split(b"\n"):
        line = line.rstrip(b"\r")
        if line.strip():
            s.lines.append(line)
            if len(s.lines) >= SAMPLE_LINES:
                break
    return s


def _delivery_files(directory: LakePath) -> tuple[list[LakePath], list[str]]:
    """The CSV files of a delivery as IngestConfig.scan sees them, and the names of other files."""
    entries = lakefs.list_entries(directory)
    if not entries and (directory.is_s3 or not directory.local().is_dir()):
        raise DeliveryError(f"{directory}: delivery directory not found")
    csvs, others = [], []
    for path, is_dir in entries:
        if path.name.startswith((".", "_")) or path.name == MANIFEST or is_dir:
            continue
        (csvs if path.suffix.lower() == ".csv" else others).append(path)
    return csvs, [p.name for p in others]


def _split(text: str, sep: str) -> list[str]:
    return [v.strip() for v in text.split(sep)]


def _header_names(header: str, sep: str) -> list[str]:
    return [n.strip('"').upper() for n in _split(header, sep)]


# --- separator --------------------------------------------------------------------------------
def _separator_vote(s: _Sample, known: set[str]) -> str | None:
    """The separator that splits this header into the most catalogued column names (then into the
    most columns); None when no candidate splits it at all."""
    scores = {}
    for sep in SEPARATORS:
        names = _header_names(s.header, sep)
        scores[sep] = (sum(n in known for n in names), len(names))
    if all(n == 1 for _, n in scores.values()):
        return None
    return max(SEPARATORS, key=lambda sep: (scores[sep], -SEPARATORS.index(sep)))


# --- encoding ---------------------------------------------------------------------------------
def _is_utf8(s: _Sample) -> bool:
    # Incremental decoding: a multi-byte character cut at the end of a sample is not an error.
    try:
        codecs.getincrementaldecoder("utf-8")().decode(s.data, final=not s.truncated)
        return True
    except UnicodeDecodeError:
        return False


def _names(samples: list[_Sample]) -> str:
    return ", ".join(s.path.name for s in samples[:10]) + (" ..." if len(samples) > 10 else "")


def _encoding(samples: list[_Sample]) -> tuple[str, str]:
    """utf-8 if every sample decodes as UTF-8, else cp1252 if the others hold bytes 0x80-0x9F that
    Windows-1252 defines (€, œ, ’), else latin-1."""
    not_utf8 = [s for s in samples if not _is_utf8(s)]
    non_ascii = [s for s in samples if any(b > 0x7F for b in s.data)]
    if not not_utf8:
        return "utf-8", (f"all sampled bytes decode as UTF-8 ({len(non_ascii)} of {len(samples)} file(s) "
                         "with non-ASCII text)" if non_ascii else "all sampled bytes are ASCII (read as UTF-8)")
    utf8_text = [s for s in non_ascii if s not in not_utf8]
    if utf8_text:
        log.warning("files of one delivery in two encodings: %s decode as UTF-8, %s do not",
                    _names(utf8_text), _names(not_utf8))
    c1 = {b for s in not_utf8 for b in s.data if 0x80 <= b <= 0x9F}
    seen = f"not UTF-8 in {len(not_utf8)} file(s) ({_names(not_utf8)})"
    if utf8_text:
        seen += f", although {len(utf8_text)} file(s) with non-ASCII text decode as UTF-8 ({_names(utf8_text)})"
    if c1 and not c1 & _CP1252_UNDEFINED:
        return "cp1252", f"{seen}; bytes in 0x80-0x9F, all Windows-1252 characters"
    if c1:
        return "latin-1", f"{seen}; bytes in 0x80-0x9F that Windows-1252 does not define"
    return "latin-1", f"{seen}; no byte in 0x80-0x9F"


# --- patient column ---------------------------------------------------------------------------
def _patient_column(samples: list[_Sample], cfg: IngestConfig, sep: str) -> tuple[str, str]:
    """NUM_ENQ or BEN_NIR_ANO when files carry it where their table's schema has a native patient
    column (BEN_NIR_PSA, NIR_ANO_17) but not that one."""
    stands_in: dict[str, list[str]] = defaultdict(list)
    for s in samples:
        if s.found is None:
            continue
        fields = {f["name"].upper() for f in cfg.schema(s.found[0])["fields"]}
        names = set(_header_names(s.header, sep))
        if not fields & set(NATIVE_PATIENT) or names & set(NATIVE_PATIENT):
            continue
        for alias in PATIENT_ALIASES:
            if alias in names and alias not in fields:
                stands_in[alias].append(s.path.name)
    if not stands_in:
        return "BEN_NIR_PSA", "native patient columns (no NUM_ENQ / BEN_NIR_ANO in place of BEN_NIR_PSA or NIR_ANO_17)"
    chosen = max(stands_in, key=lambda a: (len(stands_in[a]), -PATIENT_ALIASES.index(a)))
    evidence = "; ".join(f"{a} in place of the native patient column in {len(stands_in[a])} file(s)"
                         for a in PATIENT_ALIASES if a in stands_in)
    if len(stands_in) > 1:
        log.warning("both NUM_ENQ and BEN_NIR_ANO stand for the patient column (%s): %s chosen", evidence, chosen)
    return chosen, evidence


# --- dates ------------------------------------------------------------------------------------
def _valid_layouts(value: str) -> frozenset[str]:
    """The layouts `value` is a real date in (as the ingest parser reads them)."""
    out = set()
    for layout, rx in _DATE_PATTERNS.items():
        m = rx.fullmatch(value)
        if not m:
            continue
        month = m["m"]
        month = _MONTHS.get(month.upper()) if month.isalpha() else int(month)
        try:
            if month and int(m["y"]) > 0 and dt.date(int(m["y"]), month, int(m["d"])):
                out.add(layout)
        except ValueError:
            pass
    return frozenset(out)


def _plausible(value: str, valid: frozenset[str]) -> frozenset[str]:
    """The layouts of a value once an 8-digit value read both ways keeps its plausible years."""
    eight = valid & set(_EIGHT_DIGITS)
    if not eight:
        return valid
    year = {"ddMMyyyy": int(value[4:]), "yyyyMMdd": int(value[:4])}
    kept = {f for f in eight if year[f] in PLAUSIBLE_YEARS}
    return (valid - eight) | (kept or eight)


@dataclass
class _DateColumn:
    table: str
    column: str
    schema_layout: str | None  # the schema's own layout, None: the profile's date_formats
    values: list[tuple[frozenset[str], frozenset[str]]] = field(default_factory=list)  # (valid, plausible)
    layouts: tuple[str, ...] = ()
    unrecognised: int = 0  # values in no layout

    def decide(self) -> None:
        """The fewest layouts that read every recognisable value: each time the one that reads most
        of the values left (ties: the schema's layout, then DATE_LAYOUTS order)."""
        todo = [p for _, p in self.values if p]
        self.unrecognised = len(self.values) - len(todo)
        chosen = []
        while todo:
            counts = Counter(f for p in todo for f in p)
            best = max(counts, key=lambda f: (counts[f], f == self.schema_layout, -DATE_LAYOUTS.index(f)))
            chosen.append(best)
            todo = [p for p in todo if best not in p]
        self.layouts = tuple(chosen)

    def misread_by(self, formats: tuple[str, ...]) -> bool:
        """Whether the parser, trying `formats` in order, would misread or refuse a value."""
        for valid, plausible in self.values:
            if plausible and next((f for f in formats if f in valid), None) not in plausible:
                return True
        return False


def _date_and_number_columns(s: _Sample, cfg: IngestConfig, sep: str, encoding: str,
                             dates: dict[tuple[str, str], _DateColumn], numbers: Counter) -> int:
    """Adds the sampled values of a catalogued file's date and number fields; returns the lines used."""
    table = s.found[0]
    fields = {f["name"]: f for f in cfg.schema(table)["fields"]}
    folded = {n.upper(): n for n in fields}
    header = _header_names(s.header, sep)
    positions = {}
    for pos, name in enumerate(header):
        spec = fields.get(folded.get(name, ""))
        if spec is None:
            continue
        try:
            kind, _ = cfg.column_kind(table, spec)  # identifiers and type overrides are not parsed as such
        except DeliveryError:
            continue  # an unsupported schema format: describe() reports it
        if kind == "date":
            fmt = spec.get("format") or "default"
            key = (table, spec["name"])
            if key not in dates:
                dates[key] = _DateColumn(table, spec["name"], _STRPTIME_LAYOUTS.get(fmt))
            positions[pos] = dates[key]
        elif kind == "number":
            positions[pos] = "number"
    used = 0
    for line in s.lines:
        values = _split(line.decode(encoding, errors="replace"), sep)
        if len(values) != len(header):
            continue  # a malformed line: its values would be read in the wrong columns
        used += 1
        for pos, target in positions.items():
            v = values[pos]
            if not v:
                continue
            if target == "number":
                shape = "comma" if _DECIMAL_COMMA.fullmatch(v) else "point" if _DECIMAL_POINT.fullmatch(v) else "other"
                numbers[shape] += 1
            else:
                valid = _valid_layouts(v)
                target.values.append((valid, _plausible(v, valid)))
    return used


def _date_settings(dates: dict[tuple[str, str], _DateColumn]) -> tuple[tuple[str, ...], dict, dict]:
    """date_formats, column_date_formats and their evidence from the sampled date columns."""
    cols = [c for c in dates.values() if c.values]
    for c in cols:
        c.decide()
    seen = Counter(f for c in cols if c.schema_layout is None for f in c.layouts)
    date_formats = tuple(sorted(seen, key=lambda f: (-seen[f], DATE_LAYOUTS.index(f)))) or DEFAULT_DATE_FORMATS
    # A column needs its own layouts when its values are not in the schema's layout, or (no layout of
    # its own) when the profile's layouts, tried in order, would misread them (ddMMyyyy vs yyyyMMdd).
    needs = {}
    for c in cols:
        if not c.layouts:
            continue
        if c.schema_layout is not None:
            if c.layouts != (c.schema_layout,):
                needs[(c.table, c.column)] = c.layouts
        elif c.misread_by(date_formats):
            needs[(c.table, c.column)] = c.layouts
    column_formats = {}
    by_name = defaultdict(list)
    for c in cols:
        if c.layouts:
            by_name[c.column].append(c)
    for name, group in sorted(by_name.items()):
        wanted = [needs[(c.table, c.column)] for c in group if (c.table, c.column) in needs]
        if not wanted:
            continue
        if len({c.layouts for c in group}) == 1:
            column_formats[name] = wanted[0]
        else:  # tables disagree about this column: one entry per table that needs one
            for c in group:
                if (c.table, c.column) in needs:
                    column_formats[f"{c.table}.{c.column}"] = needs[(c.table, c.column)]
    layouts_seen = Counter(f for c in cols for f in c.layouts)
    evidence = {
        "columns_sampled": len(cols),
        "layouts": {f: layouts_seen[f] for f in DATE_LAYOUTS if layouts_seen[f]},
        "columns_with_unrecognised_values": sorted(f"{c.table}.{c.column}" for c in cols if c.unrecognised),
    }
    return date_formats, column_formats, evidence


# --- the profile ------------------------------------------------------------------------------
def detect_profile(directory, cfg: IngestConfig) -> Profile:
    """The profile of the delivery in `directory` (local or s3://), detected from the first lines of
    its files (never more than HEADER_BYTES of a file); name and source `auto`."""
    directory = LakePath(directory)
    csvs, others = _delivery_files(directory)
    samples, empty = [], []
    for path in csvs:
        s = _sample(path, cfg)
        if s is None:
            empty.append(path.name)
        else:
            samples.append(s)
    if not samples:
        what = f"{len(empty)} empty CSV file(s)" if empty else (
            f"no CSV file ({len(others)} other file(s))" if others else "no file")
        raise DeliveryError(f"{directory}: nothing to detect a delivery profile from: {what}")
    catalogued = [s for s in samples if s.found is not None]

    all_names = {f["name"].upper() for t in cfg.tables for f in cfg.schema(t)["fields"]} | set(PATIENT_ALIASES)
    votes: Counter = Counter()
    for s in samples:
        known = ({f["name"].upper() for f in cfg.schema(s.found[0])["fields"]} | set(PATIENT_ALIASES)
                 if s.found else all_names)
        vote = _separator_vote(s, known)
        if vote is not None:
            votes[vote] += 1
    separator = max(SEPARATORS, key=lambda sep: (votes[sep], -SEPARATORS.index(sep)))
    if len(votes) > 1:
        log.warning("%s: headers disagree about the separator (%s): %r chosen", directory, dict(votes), separator)

    encoding, encoding_evidence = _encoding(samples)
    patient, patient_evidence = _patient_column(samples, cfg, separator)

    dates: dict[tuple[str, str], _DateColumn] = {}
    numbers: Counter = Counter()
    lines_used = sum(_date_and_number_columns(s, cfg, separator, encoding, dates, numbers) for s in catalogued)
    date_formats, column_formats, date_evidence = _date_settings(dates)

    if separator != "," and numbers["comma"] and not numbers["point"]:
        decimal, decimal_evidence = ",", f"{numbers['comma']} decimal value(s) with a comma, none with a point"
    else:
        decimal = "."
        decimal_evidence = (f"{numbers['point']} decimal value(s) with a point, {numbers['comma']} with a comma"
                            if numbers["point"] or numbers["comma"] else "no decimal value in number fields")

    endings = Counter(s.line_ending for s in samples)
    detected = {
        "files": len(samples),
        "catalogued_files": len(catalogued),
        "sample": {"bytes_per_file": SAMPLE_BYTES, "lines_per_file": SAMPLE_LINES, "lines_read": lines_used},
        "bom": [s.path.name for s in samples if s.bom],
        "line_endings": {"crlf": endings["crlf"], "lf": endings["lf"],
                         **({"none": endings["none"]} if endings["none"] else {})},
        "separator_votes": {sep: votes[sep] for sep in SEPARATORS if votes[sep]},
        "encoding_evidence": encoding_evidence,
        "patient_column_evidence": patient_evidence,
        "date_evidence": date_evidence,
        "decimal_evidence": decimal_evidence,
        "uncatalogued_files": [s.path.name for s in samples if s.found is None],
    }
    if empty:
        detected["empty_files"] = empty
    if not votes:
        detected["separator_evidence"] = "no header splits under any candidate: the default `;`"
    profile = Profile(
        name=AUTO,
        separator=separator,
        encoding=encoding,
        patient_id_column=patient,
        date_formats=date_formats,
        column_date_formats=column_formats,
        decimal_separator=decimal,
        uncatalogued="text",
        description=f"detected from the delivery {directory}",
        source=AUTO,
        detected=detected,
    )
    try:
        validate(profile)
    except ProfileError as exc:
        raise DeliveryError(f"{directory}: the detected profile is not usable: {exc}") from None
    log.info("%s: detected profile: separator %r, %s, %s, dates %s, decimal %r", directory, separator, encoding,
             patient, list(date_formats), decimal)
    return profile


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="spark_jobs.detect", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="the delivery directory (local path or s3:// prefix)")
    p.add_argument("--config", default=None, help="ingest configuration (default config/ingest.yaml)")
    args = p.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        profile = detect_profile(args.input, IngestConfig.load(args.config))
    except (DeliveryError, ProfileError, OSError) as exc:
        print(f"spark_jobs.detect: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    sys.stdout.write(
        f"# Delivery profile detected from {args.input} ({profile.detected['files']} file(s), "
        "their headers and first lines)\n"
        "# by `python -m spark_jobs.detect`. Check it, then either save it as config/profiles/<name>.yaml\n"
        "# (with `profile: <name>`) and run `make run ... PROFILE=<name>`, or pass this file's path:\n"
        "# `make run ... PROFILE=path/to/profile.yaml`. `detected:` is what detection saw (informative only).\n"
        "# Keys: docs/ingest.md#delivery-profiles.\n"
    )
    sys.stdout.write(profile.to_yaml())
    return 0


if __name__ == "__main__":
    sys.exit(main())
