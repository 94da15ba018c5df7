"""A CNAM delivery: which file holds which SNDS table, and what its columns must be.

Everything here is decided from the header line, the delivery profile (spark_jobs.profiles) and the
configuration, before any engine reads the data. Every table of the SNDS catalogue (the schemas under
config/schemas/snds/, PMSI names with their `aa` year) is known; a file that matches none is handled
as the profile says (`uncatalogued`: ingested as all-text under its own name, skipped, or an error). A
header column that the table's schema does not have is kept as text and reported; a schema column the
file lacks is reported (rules that need it say so: docs/ingest.md#missing-columns). A missing key
column, a duplicated or empty column name stops the run with an error naming the file.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spark_jobs import lakefs
from spark_jobs.bundle import project_dir, resource
from spark_jobs.lakefs import LakePath
from spark_jobs.profiles import (DEFAULT_PROFILE, Profile, ProfileError, load_profile, normalise_encoding,
                                 validate as validate_profile)

log = logging.getLogger("snds.delivery")

CONFIG_DIR = project_dir() / "config"
#: The checksum manifest a sender writes last in a delivery (see snds_operators.landing).
MANIFEST = "SHA256SUMS"

#: Schema `format` values of date fields -> the layouts sql/ingest/_parse.sql knows.
_STRPTIME_LAYOUTS = {
    "%d%m%Y": "ddMMyyyy",
    "%d%b%Y:%H:%M:%S": "ddMMMyyyy:HH:mm:ss",
    "%d%b%Y": "ddMMMyyyy",
    "%Y-%m-%d": "yyyy-MM-dd",
    "%d/%m/%Y": "dd/MM/yyyy",
    "%Y%m%d": "yyyyMMdd",
    "%Y-%m-%dT%H:%M:%S": "yyyy-MM-ddTHH:mm:ss",
}
DATE_LAYOUTS = frozenset(_STRPTIME_LAYOUTS.values())


class DeliveryError(ValueError):
    """A delivery that cannot be ingested as it is; the message names the file and the problem."""


#: Value kinds a column is parsed as (sql/ingest/_parse.sql). `code` is text whose numerals written as
#: decimals lose their `.0` ('61.0' -> '61'): codes the schema types as numbers or booleans but that
#: real files carry as text ('000', 'D11').
KINDS = ("string", "code", "integer", "number", "boolean", "year", "yearmonth", "month", "date")


@dataclass(frozen=True)
class Column:
    name: str  # SNDS name, as in the schema (NUM_ENQ is written back under the table's native name)
    kind: str  # one of KINDS
    position: int  # 1-based position in the delivered header
    delivered_name: str
    formats: tuple[str, ...] = ()
    identifier: bool = False
    # A rule, the model or a key needs this value: one that does not parse quarantines the row. Any
    # other column's unreadable value becomes NULL, counted per column and reason (the row is kept).
    strict: bool = False
    decimal_comma: bool = False  # `number`/`integer` values may use a decimal comma (profile)

    @property
    def text_alias(self) -> str:
        return f"_t{self.position}"


@dataclass(frozen=True)
class DeliveredFile:
    path: LakePath  # local path or s3:// URI
    table: str
    year: int | None
    columns: tuple[Column, ...]  # in delivery order
    schema_order: tuple[str, ...]
    patient_column: Column | None = None  # the column naming the patient (first of patient_columns)
    catalogued: bool = True  # False: a file of no catalogued table, ingested as all-text
    extra_columns: tuple[str, ...] = ()  # delivered columns the schema does not have (kept as text)
    missing_columns: tuple[str, ...] = ()  # schema columns the file does not have

    @property
    def columns_in_schema_order(self) -> list[Column]:
        by_name = {c.name: c for c in self.columns}
        return [by_name[n] for n in self.schema_order if n in by_name]

    @property
    def identifier_columns(self) -> list[Column]:
        return [c for c in self.columns_in_schema_order if c.identifier]

    @property
    def partition(self) -> str:
        """Relative output directory of this file's rows: TABLE or TABLE/year=YYYY."""
        return self.table if self.year is None else f"{self.table}/year={self.year}"


#: Year placeholders of catalogued table names: `aa` (2-digit year, PMSI: T_MCOaaB -> T_MCO19B) and
#: `AAAA` (4-digit year: CT_IDE_AAAA_GN -> CT_IDE_2019_GN); `xx` is a 2-character variant code.
_YEAR_PLACEHOLDERS = (("AAAA", r"(?P<yyyy>[0-9]{4})"), ("aa", r"(?P<yy>[0-9]{2})"))


def _yearly(table: str) -> bool:
    return any(ph in table for ph, _ in _YEAR_PLACEHOLDERS)


def _name_pattern(table: str) -> re.Pattern:
    body = re.escape(table)
    for ph, rx in _YEAR_PLACEHOLDERS:
        body = body.replace(ph, rx, 1)
    body = body.replace("xx", "[A-Za-z0-9]{2}")
    return re.compile(rf"^{body}\.csv$", re.IGNORECASE)


def uncatalogued_table_name(path: LakePath) -> str:
    """The table an uncatalogued file is ingested as: its file name without `.csv`, as a plain name."""
    stem = path.name[: -len(".csv")] if path.name.lower().endswith(".csv") else path.name
    return re.sub(r"[^A-Za-z0-9_]", "_", stem) or "_"


@dataclass
class IngestConfig:
    profile: Profile
    identifier_columns: frozenset[str]
    type_overrides: dict[str, str]
    tables: dict[str, dict]
    schema_dir: Path
    rule_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    patient_columns: tuple[str, ...] = ("BEN_NIR_PSA", "NIR_ANO_17", "BEN_IDT_ANO")
    placeholder_ids: tuple[str, ...] = ("xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXD")
    unlinked_patient_rules: dict[str, str] = field(default_factory=dict)
    _schemas: dict[str, dict] = field(default_factory=dict, repr=False)

    # The delivery profile's settings, read where the code has always read them.
    @property
    def separator(self) -> str:
        return self.profile.separator

    @property
    def encoding(self) -> str:
        return self.profile.encoding

    @property
    def patient_id_column(self) -> str:
        return self.profile.patient_id_column

    @property
    def date_formats(self) -> tuple[str, ...]:
        return self.profile.date_formats

    @classmethod
    def load(cls, path: str | Path | None = None, profile: "Profile | str | None" = None,
             **profile_overrides) -> "IngestConfig":
        """The ingest configuration (default config/ingest.yaml) with a delivery profile (a Profile,
        a profile name or file; default: native) and optional overrides of its settings
        (encoding=, patient_id_column=, separator=)."""
        path = resource(path) if path else CONFIG_DIR / "ingest.yaml"
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
        if "delivery" in raw:
            raise DeliveryError(f"{path}: `delivery` settings now live in a delivery profile "
                                "(config/profiles/<name>.yaml; docs/ingest.md#delivery-profiles)")
        try:
            prof = profile if isinstance(profile, Profile) else load_profile(profile or DEFAULT_PROFILE)
            overrides = {k: v for k, v in profile_overrides.items() if v is not None}
            if "encoding" in overrides:
                overrides["encoding"] = normalise_encoding(overrides["encoding"])
            if overrides:
                from dataclasses import replace

                prof = replace(prof, **overrides)
                validate_profile(prof)
        except (ProfileError, TypeError) as exc:
            raise DeliveryError(str(exc)) from None
        schema_dir = Path(raw.get("schema_dir", CONFIG_DIR / "schemas"))
        cfg = cls(
            profile=prof,
            identifier_columns=frozenset(c.upper() for c in raw.get("identifier_columns", [])),
            type_overrides=dict(raw.get("type_overrides", {})),
            tables=catalogue(schema_dir, dict(raw.get("tables") or {}), path),
            schema_dir=schema_dir,
            rule_columns={t: tuple(cols) for t, cols in (raw.get("rule_columns") or {}).items()},
        )
        pseudo = raw.get("pseudonymisation") or {}
        unknown = set(pseudo) - {"patient_columns", "placeholder_ids", "unlinked_patient_rules"}
        if unknown:
            raise DeliveryError(f"{path}: pseudonymisation: unknown key(s) {sorted(unknown)}")
        if "patient_columns" in pseudo:
            cfg.patient_columns = tuple(pseudo["patient_columns"])
        if "placeholder_ids" in pseudo:
            cfg.placeholder_ids = tuple(pseudo["placeholder_ids"])
        cfg.unlinked_patient_rules = dict(pseudo.get("unlinked_patient_rules") or {})
        cfg.validate(path)
        return cfg

    def validate(self, source) -> None:
        not_ids = [c for c in (*self.patient_columns, *self.unlinked_patient_rules) if c not in self.identifier_columns]
        if not_ids:
            raise DeliveryError(f"{source}: pseudonymisation: {not_ids} must also be listed in identifier_columns")
        bad_rules = [r for r in self.unlinked_patient_rules.values() if not re.match(r"^[a-z][a-z0-9_]*$", str(r))]
        if bad_rules:
            raise DeliveryError(f"{source}: pseudonymisation.unlinked_patient_rules: rule names must be snake_case, got {bad_rules}")
        bad_kinds = {k: v for k, v in self.type_overrides.items() if v not in KINDS}
        if bad_kinds:
            raise DeliveryError(f"{source}: type_overrides: unknown kind(s) {bad_kinds}; known: {', '.join(KINDS)}")
        unknown_tables = [t for t in self.rule_columns if not any(fnmatch.fnmatchcase(n, t) for n in self.tables)]
        if unknown_tables:
            raise DeliveryError(f"{source}: rule_columns: no catalogued table matches {unknown_tables}")

    def is_identifier(self, table: str, column: str) -> bool:
        """A raw identifier: listed for every table (`identifier_columns`) or for this one
        (`tables.<TABLE>.identifier_columns`). Names compare case-insensitively (CT_* tables spell
        them in lower case)."""
        name = column.upper()
        return name in self.identifier_columns or name in {
            c.upper() for c in self.tables.get(table, {}).get("identifier_columns", ())}

    def is_rule_column(self, table: str, column: str) -> bool:
        """A column whose value a rule, the model or a key needs (`rule_columns`, and the schema's key)."""
        if column in self.primary_key(table):
            return True
        return any(column in cols for pattern, cols in self.rule_columns.items() if fnmatch.fnmatchcase(table, pattern))

    # --- schemas -----------------------------------------------------------------------------
    def schema(self, table: str) -> dict:
        if table not in self._schemas:
            with open(self.schema_dir / self.tables[table]["schema"], encoding="utf-8") as fh:
                self._schemas[table] = json.load(fh)
        return self._schemas[table]

    def primary_key(self, table: str) -> list[str]:
        key = self.schema(table).get("primaryKey") or []
        return [key] if isinstance(key, str) else list(key)

    def _override(self, name: str) -> str | None:
        if name in self.type_overrides:
            return self.type_overrides[name]
        for pattern, kind in self.type_overrides.items():
            if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(name, pattern):
                return kind
        return None

    def column_kind(self, table: str, field_spec: dict) -> tuple[str, tuple[str, ...]]:
        name = field_spec["name"]
        if self.is_identifier(table, name):
            return "string", ()
        override = self._override(name)
        if override is not None:
            return override, ()
        ftype, fmt = field_spec.get("type", "string"), field_spec.get("format", "default")
        if ftype in ("date", "datetime"):
            if fmt == "%m":
                return "month", ()
            chosen = self.profile.date_formats_for(table, name)
            if chosen:
                return "date", tuple(chosen)
            if fmt in (None, "", "default"):
                return "date", self.date_formats
            if fmt not in _STRPTIME_LAYOUTS:
                raise DeliveryError(f"schema of {table}: field {name} has unsupported date format {fmt!r}")
            # The schema's layout first, then the profile's (senders do not always follow the schema).
            return "date", tuple(dict.fromkeys((_STRPTIME_LAYOUTS[fmt], *self.date_formats)))
        if ftype in ("string", "integer", "number", "boolean", "year", "yearmonth"):
            return ftype, ()
        raise DeliveryError(f"schema of {table}: field {name} has unsupported type {ftype!r}")

    # --- files -------------------------------------------------------------------------------
    def _file_patterns(self) -> list[tuple[re.Pattern, str]]:
        if not hasattr(self, "_patterns_cache"):
            # Longer names first: T_MCOaaFBSTC is tried before T_MCOaaFB (both patterns cannot match
            # one name, but the order makes the choice obvious).
            self._patterns_cache = [(_name_pattern(t), t) for t in sorted(self.tables, key=lambda t: (-len(t), t))]
        return self._patterns_cache

    def identify(self, path: LakePath) -> tuple[str, int | None] | None:
        """(table, year) of a delivered file from its name, or None if it matches no catalogued table."""
        for pattern, table in self._file_patterns():
            m = pattern.match(path.name)
            if m:
                groups = m.groupdict()
                if groups.get("yyyy"):
                    return table, int(groups["yyyy"])
                if groups.get("yy"):
                    return table, 2000 + int(groups["yy"])
                return table, None
        return None

    def read_header(self, path: LakePath) -> list[str]:
        first = lakefs.read_first_line(path)
        if not first.strip():
            raise DeliveryError(f"{path}: empty file or empty header line")
        if first.startswith(b"\xef\xbb\xbf"):
            first = first[3:]
        try:
            text = first.decode("utf-8" if self.encoding == "utf-8" else self.encoding)
        except UnicodeDecodeError:
            raise DeliveryError(f"{path}: header line is not valid {self.encoding}; check the profile's "
                                "encoding (or run with PROFILE=auto)") from None
        return text.rstrip("\r\n").split(self.separator)

    def _patient_alias(self, name: str, fields: dict) -> str | None:
        """The native name a NUM_ENQ / BEN_NIR_ANO column stands for in this table, if it does."""
        alias = self.patient_id_column
        if alias == "BEN_NIR_PSA" or name.upper() != alias or alias in fields:
            return None
        return next((c for c in ("BEN_NIR_PSA", "NIR_ANO_17") if c in fields), None)

    def describe(self, path) -> DeliveredFile | None:
        """Identify the table of `path` and check its header against the table's schema. A file of no
        catalogued table is described as all-text under its own name (`uncatalogued: text`), is None
        (`skip`, logged) or a DeliveryError (`error`)."""
        path = LakePath(path)
        found = self.identify(path)
        if found is None:
            policy = self.profile.uncatalogued
            if policy == "error":
                raise DeliveryError(
                    f"{path}: unknown table: the file name matches no catalogued SNDS table (expected e.g. "
                    "ER_PRS_F.csv, or T_MCO19B.csv for a yearly PMSI table); the profile's `uncatalogued: error` "
                    "refuses it (`text` ingests it as all-text, `skip` ignores it)")
            if policy == "skip":
                log.warning("%s: matches no catalogued table: skipped (profile: uncatalogued: skip)", path)
                return None
            return self._describe_uncatalogued(path)
        table, year = found
        schema = self.schema(table)
        fields = {f["name"]: f for f in schema["fields"]}
        folded = {n.upper(): n for n in fields}
        header = self.read_header(path)
        problems = []
        seen: dict[str, int] = {}
        columns = []
        extra = []
        for pos, delivered in enumerate(header, start=1):
            name = delivered.strip()
            if not name:
                problems.append(f"empty column name at position {pos}")
                continue
            native = self._patient_alias(name, fields)
            if native:
                name = native
            elif name not in fields and name.upper() in folded:
                name = folded[name.upper()]  # same column, other case
            if name in seen:
                problems.append(f"column {name!r} appears twice (positions {seen[name]} and {pos})")
                continue
            seen[name] = pos
            if name not in fields:
                # Not in the schema: kept, as text (a sender's extra column is data too).
                extra.append(name)
                columns.append(Column(name=name, kind="string", position=pos, delivered_name=delivered,
                                      identifier=self.is_identifier(table, name)))
                continue
            kind, formats = self.column_kind(table, fields[name])
            columns.append(
                Column(
                    name=name,
                    kind=kind,
                    position=pos,
                    delivered_name=delivered,
                    formats=formats,
                    identifier=self.is_identifier(table, name),
                    strict=self.is_rule_column(table, name),
                    decimal_comma=self.profile.decimal_separator == ",",
                )
            )
        missing_keys = [k for k in self.primary_key(table) if k not in seen]
        if missing_keys:
            problems.append(f"key columns missing: {', '.join(missing_keys)}")
        if problems:
            raise DeliveryError(f"{path}: header does not match the {table} schema: " + "; ".join(problems))
        if extra:
            log.warning("%s: column(s) %s not in the %s schema: kept as text", path, ", ".join(extra), table)
        by_name = {c.name: c for c in columns}
        patient = next((by_name[n] for n in self.patient_columns if n in by_name), None)
        order = tuple(f["name"] for f in schema["fields"]) + tuple(extra)
        return DeliveredFile(
            path=path,
            table=table,
            year=year,
            columns=tuple(columns),
            schema_order=order,
            patient_column=patient,
            extra_columns=tuple(extra),
            missing_columns=tuple(n for n in fields if n not in seen),
        )

    def _describe_uncatalogued(self, path: LakePath) -> DeliveredFile:
        table = uncatalogued_table_name(path)
        header = self.read_header(path)
        columns, seen, problems = [], {}, []
        for pos, delivered in enumerate(header, start=1):
            name = delivered.strip()
            if not name or '"' in name:
                problems.append(f"unusable column name {name!r} at position {pos}")
                continue
            if name in seen:
                problems.append(f"column {name!r} appears twice (positions {seen[name]} and {pos})")
                continue
            seen[name] = pos
            columns.append(Column(name=name, kind="string", position=pos, delivered_name=delivered,
                                  identifier=self.is_identifier(table, name)))
        if problems:
            raise DeliveryError(f"{path}: uncatalogued file, header unusable: " + "; ".join(problems))
        log.warning("%s: matches no catalogued table: ingested as all-text table %s (profile: uncatalogued: text)",
                    path, table)
        return DeliveredFile(path=path, table=table, year=None, columns=tuple(columns),
                             schema_order=tuple(c.name for c in columns), catalogued=False)

    def skipped(self, directory) -> list[str]:
        """Names of the CSV files of a delivery that match no catalogued table (skipped under
        `uncatalogued: skip`)."""
        return sorted(path.name for path, is_dir in lakefs.list_entries(LakePath(directory))
                      if not is_dir and path.suffix.lower() == ".csv" and not path.name.startswith((".", "_"))
                      and self.identify(path) is None)

    def scan(self, directory) -> list[DeliveredFile]:
        """Every table file of a delivery directory (local path or s3:// prefix), checked; sorted by
        table then year."""
        directory = LakePath(directory)
        entries = lakefs.list_entries(directory)
        if not entries and (directory.is_s3 or not directory.local().is_dir()):
            raise DeliveryError(f"{directory}: delivery directory not found")
        files = []
        for path, is_dir in entries:
            # Hidden files, _-prefixed entries (e.g. the generator's _truth/) and the sender's
            # checksum manifest (checked by the landing watch) are not tables.
            if path.name.startswith((".", "_")) or path.name == MANIFEST or is_dir:
                continue
            if path.suffix.lower() != ".csv":
                log.warning("%s: not a CSV file, ignored", path)
                continue
            described = self.describe(path)
            if described is not None:
                files.append(described)
        seen: dict[tuple[str, int | None], LakePath] = {}
        for f in files:
            key = (f.table, f.year)
            if key in seen:
                raise DeliveryError(f"{f.path}: table {f.table} (year {f.year}) is also delivered in {seen[key]}")
            seen[key] = f.path
        clash = sorted({f.table for f in files if not f.catalogued} & {f.table for f in files if f.catalogued})
        if clash:
            raise DeliveryError(f"{directory}: uncatalogued file(s) would be ingested under catalogued name(s) {clash}")
        present = {f.table for f in files}
        missing = [t for t, spec in self.tables.items() if spec.get("required") and t not in present]
        if missing:
            raise DeliveryError(f"{directory}: required table(s) missing from the delivery: {', '.join(missing)}")
        if not any(f.catalogued for f in files):
            raise DeliveryError(f"{directory}: no file of a catalogued SNDS table in this delivery "
                                f"({len(files)} uncatalogued file(s)); expected e.g. ER_PRS_F.csv or T_MCO19B.csv")
        return sorted(files, key=lambda f: (f.table, f.year or 0))


def catalogue(schema_dir: Path, listed: dict[str, dict], source) -> dict[str, dict]:
    """Every known table: the ones `tables:` lists (with their options) and every schema file under
    `<schema_dir>/snds/` (the SNDS catalogue), yearly when the name holds a year placeholder."""
    tables: dict[str, dict] = {}
    for path in sorted((schema_dir / "snds").glob("*.json")):
        tables[path.stem] = {"schema": f"snds/{path.name}"}
    for name, spec in listed.items():
        spec = dict(spec or {})
        unknown = set(spec) - {"schema", "required", "identifier_columns"}
        if unknown:
            raise DeliveryError(f"{source}: tables.{name}: allows schema/required/identifier_columns; got {sorted(spec)}")
        if "schema" not in spec and name not in tables:
            raise DeliveryError(f"{source}: tables.{name}: no schema file snds/{name}.json; give `schema`")
        tables[name] = {**tables.get(name, {}), **spec}
    for name, spec in tables.items():
        spec["yearly"] = _yearly(name)
    return tables
