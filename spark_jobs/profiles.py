"""Delivery profiles: how a sender wrote a delivery's files (config/profiles/<name>.yaml).

A profile says what the files look like, never what the data means: separator, encoding, the name of
the patient column, the date layouts of date fields without a layout of their own (and per column),
the decimal separator, and what becomes of a file that matches no catalogued table. A region names
its default profile (`profile:` in config/regions/<region>.yaml); a run may choose another by name or
path, or `auto`: the ingest step then inspects the delivery (spark_jobs.detect) and runs with what it
found. The effective profile is written into the ingest report, the run summary and the audit record.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from spark_jobs.bundle import project_dir, resource

PROFILE_DIR = project_dir() / "config" / "profiles"
DEFAULT_PROFILE = "native"
AUTO = "auto"

#: Date layouts the ingest parser knows (sql/ingest/_parse.sql).
DATE_LAYOUTS = ("dd/MM/yyyy", "yyyy-MM-dd", "ddMMyyyy", "yyyyMMdd", "ddMMMyyyy:HH:mm:ss", "ddMMMyyyy",
                "yyyy-MM-ddTHH:mm:ss")
#: Encodings a delivery may be written in. cp1252 (Windows-1252) is Latin-1 plus printable characters
#: in 0x80-0x9F (€, œ, ’): French Windows exports.
ENCODINGS = ("utf-8", "latin-1", "cp1252")
_ENCODING_ALIASES = {"utf8": "utf-8", "utf-8-sig": "utf-8", "latin1": "latin-1", "iso-8859-1": "latin-1",
                     "iso8859-1": "latin-1", "windows-1252": "cp1252", "cp-1252": "cp1252"}
#: The patient column naming: BEN_NIR_PSA = the native SNDS names (BEN_NIR_PSA in DCIR and IR tables,
#: NIR_ANO_17 in PMSI); NUM_ENQ or BEN_NIR_ANO = that one column in every table in place of both
#: (CNAM study extracts), written back under each table's native name at ingest.
PATIENT_COLUMNS = ("BEN_NIR_PSA", "NUM_ENQ", "BEN_NIR_ANO")
UNCATALOGUED = ("text", "skip", "error")
DECIMAL_SEPARATORS = (".", ",")

_KEYS = {"profile", "description", "separator", "encoding", "patient_id_column", "date_formats",
         "column_date_formats", "decimal_separator", "uncatalogued", "detected"}


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Profile:
    name: str
    separator: str = ";"
    encoding: str = "utf-8"
    patient_id_column: str = "BEN_NIR_PSA"
    # Layouts tried, in order, for date fields whose schema gives no layout of its own.
    date_formats: tuple[str, ...] = ("dd/MM/yyyy", "yyyy-MM-dd")
    # Layouts of given columns (`COLUMN` or `TABLE.COLUMN`, e.g. `T_MCOaaC.ENT_DAT`), in place of the
    # schema's or the profile's: what a sender actually wrote.
    column_date_formats: dict[str, tuple[str, ...]] = field(default_factory=dict)
    decimal_separator: str = "."
    # A file that matches no catalogued table: ingested as all-text under its own name (`text`),
    # skipped with a warning (`skip`), or an error that stops the run (`error`).
    uncatalogued: str = "text"
    description: str = ""
    source: str = ""  # the file it was read from, or "auto" (detected)
    # What detection saw (BOM, line endings, evidence per setting); informative only.
    detected: dict = field(default_factory=dict)

    def date_formats_for(self, table: str, column: str) -> tuple[str, ...] | None:
        """The layouts this profile gives for one column, or None (the schema's, then date_formats)."""
        return self.column_date_formats.get(f"{table}.{column}") or self.column_date_formats.get(column)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["date_formats"] = list(self.date_formats)
        d["column_date_formats"] = {k: list(v) for k, v in sorted(self.column_date_formats.items())}
        return d

    def to_yaml(self) -> str:
        """The profile as a file a user can keep under config/profiles/ (and pass as PROFILE=<path>)."""
        d = self.to_dict()
        d.pop("source")
        d["profile"] = d.pop("name")
        if not d["detected"]:
            d.pop("detected")
        if not d["description"]:
            d.pop("description")
        order = ["profile", "description", "separator", "encoding", "patient_id_column", "date_formats",
                 "column_date_formats", "decimal_separator", "uncatalogued", "detected"]
        return yaml.safe_dump({k: d[k] for k in order if k in d}, sort_keys=False, allow_unicode=True,
                              default_flow_style=None, width=110)


def normalise_encoding(encoding: str) -> str:
    e = str(encoding).strip().lower()
    return _ENCODING_ALIASES.get(e, e)


def profile_from_dict(raw: dict, source: str) -> Profile:
    if not isinstance(raw, dict):
        raise ProfileError(f"{source}: a profile is a mapping of settings, got {type(raw).__name__}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ProfileError(f"{source}: unknown key(s) {sorted(unknown)}; a profile allows {sorted(_KEYS)}")
    name = str(raw.get("profile") or Path(source).stem)
    cdf = raw.get("column_date_formats") or {}
    if not isinstance(cdf, dict):
        raise ProfileError(f"{source}: column_date_formats must map COLUMN (or TABLE.COLUMN) to a list of layouts")
    p = Profile(
        name=name,
        separator=str(raw.get("separator", ";")),
        encoding=normalise_encoding(raw.get("encoding", "utf-8")),
        patient_id_column=str(raw.get("patient_id_column", "BEN_NIR_PSA")),
        date_formats=tuple(raw.get("date_formats") or ("dd/MM/yyyy", "yyyy-MM-dd")),
        column_date_formats={str(k): tuple([v] if isinstance(v, str) else v) for k, v in cdf.items()},
        decimal_separator=str(raw.get("decimal_separator", ".")),
        uncatalogued=str(raw.get("uncatalogued", "text")),
        description=str(raw.get("description") or ""),
        source=source,
        detected=dict(raw.get("detected") or {}),
    )
    validate(p)
    return p


def validate(p: Profile) -> None:
    src = p.source or p.name
    if len(p.separator) != 1 or p.separator in "\r\n\"":
        raise ProfileError(f"{src}: separator must be one character, got {p.separator!r}")
    if p.encoding not in ENCODINGS:
        raise ProfileError(f"{src}: encoding must be one of {', '.join(ENCODINGS)}, got {p.encoding!r}")
    if p.patient_id_column not in PATIENT_COLUMNS:
        raise ProfileError(f"{src}: patient_id_column must be one of {', '.join(PATIENT_COLUMNS)}, "
                           f"got {p.patient_id_column!r}")
    layouts = [*p.date_formats, *(f for v in p.column_date_formats.values() for f in v)]
    bad = sorted({f for f in layouts if f not in DATE_LAYOUTS})
    if bad:
        raise ProfileError(f"{src}: unsupported date layout(s) {bad}; known: {', '.join(DATE_LAYOUTS)}")
    bad_keys = [k for k in p.column_date_formats if not re.fullmatch(r"([A-Za-z0-9_]+\.)?[A-Z0-9_]+", k)]
    if bad_keys:
        raise ProfileError(f"{src}: column_date_formats keys must be COLUMN or TABLE.COLUMN, got {bad_keys}")
    if p.decimal_separator not in DECIMAL_SEPARATORS:
        raise ProfileError(f"{src}: decimal_separator must be '.' or ',', got {p.decimal_separator!r}")
    if p.decimal_separator == p.separator:
        raise ProfileError(f"{src}: decimal_separator and separator cannot both be {p.separator!r}")
    if p.uncatalogued not in UNCATALOGUED:
        raise ProfileError(f"{src}: uncatalogued must be one of {', '.join(UNCATALOGUED)}, got {p.uncatalogued!r}")


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def profile_path(name_or_path: str) -> Path:
    """A profile name (config/profiles/<name>.yaml) or a path to a profile file."""
    text = str(name_or_path)
    if re.fullmatch(r"[A-Za-z0-9_-]+", text):
        path = PROFILE_DIR / f"{text}.yaml"
        if not path.is_file():
            raise ProfileError(f"unknown profile {text!r}: known profiles are {', '.join(available_profiles())} "
                               f"(files under {PROFILE_DIR}), `{AUTO}` (detect it from the delivery) or a path "
                               "to a profile file (make detect INPUT=<dir> writes one)")
        return path
    path = resource(text)
    if not Path(path).is_file():
        raise ProfileError(f"profile file {text} not found")
    return Path(path)


def load_profile(name_or_path: str | None = None) -> Profile:
    """The profile named (default: native). `auto` is not a file: see spark_jobs.detect."""
    if name_or_path in (None, ""):
        name_or_path = DEFAULT_PROFILE
    if name_or_path == AUTO:
        raise ProfileError("the `auto` profile is detected from a delivery (spark_jobs.detect.detect_profile)")
    path = profile_path(name_or_path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    return profile_from_dict(raw, str(path))
