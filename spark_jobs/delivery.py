"""A CNAM delivery: which file holds which SNDS table, and what its columns must be.

Everything here is decided from the header line and the configuration, before any engine reads the
data: an unknown file, a missing required table or a header that does not match the table's schema
stops the run with an error naming the file and the problem.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spark_jobs import lakefs
from spark_jobs.bundle import project_dir, resource
from spark_jobs.lakefs import LakePath

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
}
DATE_LAYOUTS = frozenset(_STRPTIME_LAYOUTS.values())


class DeliveryError(ValueError):
    """A delivery that cannot be ingested as it is; the message names the file and the problem."""


@dataclass(frozen=True)
class Column:
    name: str  # SNDS name, as in the schema (NUM_ENQ is written back under the table's native name)
    kind: str  # string, integer, number, boolean, date, year, yearmonth, month
    position: int  # 1-based position in the delivered header
    delivered_name: str
    formats: tuple[str, ...] = ()
    identifier: bool = False

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


@dataclass
class IngestConfig:
    separator: str
    encoding: str
    patient_id_column: str
    date_formats: tuple[str, ...]
    identifier_columns: frozenset[str]
    type_overrides: dict[str, str]
    tables: dict[str, dict]
    schema_dir: Path
    patient_columns: tuple[str, ...] = ("BEN_NIR_PSA", "NIR_ANO_17", "BEN_IDT_ANO")
    placeholder_ids: tuple[str, ...] = ("xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXD")
    unlinked_patient_rules: dict[str, str] = field(default_factory=dict)
    _schemas: dict[str, dict] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: str | Path | None = None, **profile_overrides) -> "IngestConfig":
        path = resource(path) if path else CONFIG_DIR / "ingest.yaml"
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
        delivery = dict(raw.get("delivery", {}))
        delivery.update({k: v for k, v in profile_overrides.items() if v is not None})
        cfg = cls(
            separator=delivery.get("separator", ";"),
            encoding=delivery.get("encoding", "utf-8"),
            patient_id_column=delivery.get("patient_id_column", "BEN_NIR_PSA"),
            date_formats=tuple(delivery.get("date_formats", ["dd/MM/yyyy", "yyyy-MM-dd"])),
            identifier_columns=frozenset(raw.get("identifier_columns", [])),
            type_overrides=dict(raw.get("type_overrides", {})),
            tables=dict(raw["tables"]),
            schema_dir=Path(raw.get("schema_dir", CONFIG_DIR / "schemas")),
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
        if len(self.separator) != 1 or self.separator in "\r\n\"":
            raise DeliveryError(f"{source}: delivery.separator must be one character, got {self.separator!r}")
        if self.encoding.lower() not in ("utf-8", "utf8", "latin-1", "latin1", "iso-8859-1"):
            raise DeliveryError(f"{source}: delivery.encoding must be utf-8 or latin-1, got {self.encoding!r}")
        if self.patient_id_column not in ("BEN_NIR_PSA", "NUM_ENQ"):
            raise DeliveryError(f"{source}: delivery.patient_id_column must be BEN_NIR_PSA or NUM_ENQ")
        not_ids = [c for c in (*self.patient_columns, *self.unlinked_patient_rules) if c not in self.identifier_columns]
        if not_ids:
            raise DeliveryError(f"{source}: pseudonymisation: {not_ids} must also be listed in identifier_columns")
        bad_rules = [r for r in self.unlinked_patient_rules.values() if not re.match(r"^[a-z][a-z0-9_]*$", str(r))]
        if bad_rules:
            raise DeliveryError(f"{source}: pseudonymisation.unlinked_patient_rules: rule names must be snake_case, got {bad_rules}")
        bad = [f for f in self.date_formats if f not in DATE_LAYOUTS]
        if bad:
            raise DeliveryError(f"{source}: delivery.date_formats: unsupported {bad}; known: {sorted(DATE_LAYOUTS)}")
        for name, spec in self.tables.items():
            unknown = set(spec) - {"schema", "required", "yearly", "identifier_columns"}
            if unknown or "schema" not in spec:
                raise DeliveryError(f"{source}: tables.{name}: needs `schema`, allows required/yearly/identifier_columns; got {sorted(spec)}")

    def is_identifier(self, table: str, column: str) -> bool:
        """A raw identifier: listed for every table (`identifier_columns`) or for this one
        (`tables.<TABLE>.identifier_columns`)."""
        return column in self.identifier_columns or column in self.tables.get(table, {}).get("identifier_columns", ())

    # --- schemas -----------------------------------------------------------------------------
    def schema(self, table: str) -> dict:
        if table not in self._schemas:
            with open(self.schema_dir / self.tables[table]["schema"], encoding="utf-8") as fh:
                self._schemas[table] = json.load(fh)
        return self._schemas[table]

    def column_kind(self, table: str, field_spec: dict) -> tuple[str, tuple[str, ...]]:
        name = field_spec["name"]
        if self.is_identifier(table, name):
            return "string", ()
        if name in self.type_overrides:
            return self.type_overrides[name], ()
        ftype, fmt = field_spec.get("type", "string"), field_spec.get("format", "default")
        if ftype in ("date", "datetime"):
            if fmt == "%m":
                return "month", ()
            if fmt in (None, "", "default"):
                return "date", self.date_formats
            if fmt not in _STRPTIME_LAYOUTS:
                raise DeliveryError(f"schema of {table}: field {name} has unsupported date format {fmt!r}")
            return "date", (_STRPTIME_LAYOUTS[fmt],)
        if ftype in ("string", "integer", "number", "boolean", "year", "yearmonth"):
            return ftype, ()
        raise DeliveryError(f"schema of {table}: field {name} has unsupported type {ftype!r}")

    # --- files -------------------------------------------------------------------------------
    def _file_patterns(self) -> list[tuple[re.Pattern, str]]:
        patterns = []
        for table, spec in self.tables.items():
            if spec.get("yearly"):
                if "aa" not in table:
                    raise DeliveryError(f"tables.{table}: a yearly table name must contain the `aa` year placeholder")
                body = re.escape(table).replace("aa", r"(?P<yy>[0-9]{2})", 1)
            else:
                body = re.escape(table)
            patterns.append((re.compile(rf"^{body}\.csv$", re.IGNORECASE), table))
        return patterns

    def identify(self, path: LakePath) -> tuple[str, int | None]:
        for pattern, table in self._file_patterns():
            m = pattern.match(path.name)
            if m:
                yy = m.groupdict().get("yy")
                return table, (2000 + int(yy) if yy is not None else None)
        raise DeliveryError(
            f"{path}: unknown table: the file name matches none of the tables in the ingest configuration "
            "(expected e.g. ER_PRS_F.csv, or T_MCO19B.csv for a yearly PMSI table)"
        )

    def read_header(self, path: LakePath) -> list[str]:
        first = lakefs.read_first_line(path)
        if not first.strip():
            raise DeliveryError(f"{path}: empty file or empty header line")
        text = first.decode("latin-1" if self.encoding.lower() in ("latin-1", "latin1", "iso-8859-1") else "utf-8")
        return text.lstrip("\ufeff").rstrip("\r\n").split(self.separator)

    def describe(self, path) -> DeliveredFile:
        """Identify the table of `path` and check its header against the table's schema."""
        path = LakePath(path)
        table, year = self.identify(path)
        schema = self.schema(table)
        fields = {f["name"]: f for f in schema["fields"]}
        header = self.read_header(path)
        problems = []
        seen: dict[str, int] = {}
        columns = []
        for pos, delivered in enumerate(header, start=1):
            name = delivered.strip()
            if self.patient_id_column == "NUM_ENQ" and name == "NUM_ENQ" and "NUM_ENQ" not in fields:
                native = [c for c in ("BEN_NIR_PSA", "NIR_ANO_17") if c in fields]
                if not native:
                    problems.append(f"NUM_ENQ given but table {table} has no patient column")
                    continue
                name = native[0]
            if not name:
                problems.append(f"empty column name at position {pos}")
                continue
            if name not in fields:
                problems.append(f"column {name!r} (position {pos}) is not in the {table} schema")
                continue
            if name in seen:
                problems.append(f"column {name!r} appears twice (positions {seen[name]} and {pos})")
                continue
            seen[name] = pos
            kind, formats = self.column_kind(table, fields[name])
            columns.append(
                Column(
                    name=name,
                    kind=kind,
                    position=pos,
                    delivered_name=delivered,
                    formats=formats,
                    identifier=self.is_identifier(table, name),
                )
            )
        missing_keys = [k for k in schema.get("primaryKey") or [] if k not in seen]
        if missing_keys:
            problems.append(f"key columns missing: {', '.join(missing_keys)}")
        if problems:
            raise DeliveryError(f"{path}: header does not match the {table} schema: " + "; ".join(problems))
        by_name = {c.name: c for c in columns}
        patient = next((by_name[n] for n in self.patient_columns if n in by_name), None)
        return DeliveredFile(
            path=path,
            table=table,
            year=year,
            columns=tuple(columns),
            schema_order=tuple(f["name"] for f in schema["fields"]),
            patient_column=patient,
        )

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
            files.append(self.describe(path))
        seen: dict[tuple[str, int | None], LakePath] = {}
        for f in files:
            key = (f.table, f.year)
            if key in seen:
                raise DeliveryError(f"{f.path}: table {f.table} (year {f.year}) is also delivered in {seen[key]}")
            seen[key] = f.path
        present = {f.table for f in files}
        missing = [t for t, spec in self.tables.items() if spec.get("required") and t not in present]
        if missing:
            raise DeliveryError(f"{directory}: required table(s) missing from the delivery: {', '.join(missing)}")
        return sorted(files, key=lambda f: (f.table, f.year or 0))
