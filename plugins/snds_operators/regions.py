"""Region configurations (config/regions/*.yaml): where a region's data lives and which engine runs it.

Cheap to import (PyYAML only): DAG files call this at parse time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from spark_jobs.vault import paths_overlap

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
REGIONS_DIR = PROJECT_ROOT / "config" / "regions"
ENGINES = ("duckdb", "spark")

_REQUIRED = ("region", "lake_root", "engine", "ingest_config", "pseudonymisation")
_ALLOWED = set(_REQUIRED) | {"description", "default", "duckdb", "spark"}
_PSEUDO_KEYS = {"vault_root", "key_provider", "argon2"}
_KEY_PROVIDERS = {
    "local_file": ({"type", "path"}, {"create_if_missing"}),
    "aws_kms": ({"type", "key_arn", "region_name"}, {"aws_conn_id", "create_if_missing"}),
}
_ARGON2_KEYS = {"time_cost", "memory_cost_kib", "parallelism"}


class RegionConfigError(ValueError):
    """A region file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Region:
    name: str
    source: Path
    lake_root: Path
    engine: str
    ingest_config: Path
    default: bool
    duckdb: dict
    spark: dict
    vault_root: Path
    key_provider: dict  # type local_file (path resolved) or aws_kms; see config/regions/local.yaml
    argon2: dict
    description: str = ""

    @property
    def spark_conn_id(self) -> str:
        return self.spark["conn_id"]

    def pseudonymisation_args(self, argon2: bool = True) -> list[str]:
        """The step arguments naming the region's vault, key provider and (with `argon2`) argon2
        parameters."""
        kp = self.key_provider
        if kp["type"] == "local_file":
            keys = ["--key-file", str(kp["path"])]
        else:
            keys = ["--kms-key-arn", kp["key_arn"], "--kms-region", kp["region_name"]]
        args = ["--vault", str(self.vault_root), *keys]
        if argon2:
            a = self.argon2
            args += ["--argon2-time-cost", str(a["time_cost"]), "--argon2-memory-kib", str(a["memory_cost_kib"]),
                     "--argon2-parallelism", str(a["parallelism"])]
        return args


def _pseudonymisation(path: Path, raw: dict, lake_root: Path) -> tuple[Path, dict, dict]:
    """Checks the region's `pseudonymisation` section: vault and key apart from the lake, a known key
    provider with its fields, argon2 parameters (defaults: t=2, 19 MiB, 1 lane)."""
    if not isinstance(raw, dict):
        raise RegionConfigError(f"{path}: pseudonymisation: expected a mapping")
    unknown = sorted(set(raw) - _PSEUDO_KEYS)
    missing = [k for k in ("vault_root", "key_provider") if k not in raw]
    if unknown or missing:
        raise RegionConfigError(f"{path}: pseudonymisation: unknown key(s) {unknown}, missing key(s) {missing}")
    if "://" in str(raw["vault_root"]) and not str(raw["vault_root"]).startswith("file://"):
        raise RegionConfigError(f"{path}: pseudonymisation.vault_root: only local paths are supported so far")
    vault_root = _resolve(str(raw["vault_root"]))
    if paths_overlap(vault_root, lake_root):
        raise RegionConfigError(
            f"{path}: pseudonymisation.vault_root {vault_root} overlaps lake_root {lake_root}: "
            "the vault must be stored apart from the lake")
    kp = dict(raw["key_provider"] or {})
    kind = kp.get("type")
    if kind not in _KEY_PROVIDERS:
        raise RegionConfigError(f"{path}: pseudonymisation.key_provider.type must be one of {sorted(_KEY_PROVIDERS)}")
    required, optional = _KEY_PROVIDERS[kind]
    if set(kp) - required - optional or required - set(kp):
        raise RegionConfigError(
            f"{path}: pseudonymisation.key_provider ({kind}) needs {sorted(required)}, allows {sorted(optional)}; "
            f"got {sorted(kp)}")
    if kind == "local_file":
        kp["path"] = _resolve(str(kp["path"]))
        if paths_overlap(kp["path"], lake_root):
            raise RegionConfigError(f"{path}: pseudonymisation.key_provider.path {kp['path']} is inside the lake")
    argon2 = {"time_cost": 2, "memory_cost_kib": 19 * 1024, "parallelism": 1, **(raw.get("argon2") or {})}
    if set(argon2) - _ARGON2_KEYS or not all(isinstance(v, int) and v > 0 for v in argon2.values()):
        raise RegionConfigError(f"{path}: pseudonymisation.argon2: positive integers {sorted(_ARGON2_KEYS)} only")
    return vault_root, kp, argon2


def _resolve(path: str) -> Path:
    if path.startswith("file://"):
        path = path[len("file://") :]
    p = Path(path)
    return p if p.is_absolute() else PROJECT_ROOT / p


def load_region(path: Path) -> Region:
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise RegionConfigError(f"{path}: expected a mapping")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise RegionConfigError(f"{path}: missing key(s): {', '.join(missing)}")
    unknown = sorted(set(raw) - _ALLOWED)
    if unknown:
        raise RegionConfigError(f"{path}: unknown key(s): {', '.join(unknown)}")
    if raw["region"] != path.stem:
        raise RegionConfigError(f"{path}: region {raw['region']!r} must match the file name {path.stem!r}")
    engine = os.environ.get("SNDS_ENGINE") or raw["engine"]
    if engine not in ENGINES:
        raise RegionConfigError(f"{path}: engine {engine!r} is not one of {', '.join(ENGINES)}")
    spark = dict(raw.get("spark") or {})
    if engine == "spark" and not spark.get("conn_id"):
        raise RegionConfigError(f"{path}: spark.conn_id is required when the engine is spark")
    if "://" in raw["lake_root"] and not raw["lake_root"].startswith("file://"):
        raise RegionConfigError(f"{path}: lake_root {raw['lake_root']!r}: only local paths are supported so far")
    lake_root = _resolve(raw["lake_root"])
    vault_root, key_provider, argon2 = _pseudonymisation(path, raw["pseudonymisation"], lake_root)
    return Region(
        name=raw["region"],
        source=path,
        lake_root=lake_root,
        vault_root=vault_root,
        key_provider=key_provider,
        argon2=argon2,
        engine=engine,
        ingest_config=_resolve(raw["ingest_config"]),
        default=bool(raw.get("default", False)),
        duckdb=dict(raw.get("duckdb") or {}),
        spark=spark,
        description=raw.get("description", ""),
    )


def load_regions(directory: Path | None = None) -> dict[str, Region]:
    """Every region of `directory` (default: config/regions, or $SNDS_REGIONS_DIR)."""
    directory = Path(directory or os.environ.get("SNDS_REGIONS_DIR") or REGIONS_DIR)
    regions = {}
    for path in sorted(directory.glob("*.yaml")):
        region = load_region(path)
        regions[region.name] = region
    defaults = [r.name for r in regions.values() if r.default]
    if len(defaults) > 1:
        raise RegionConfigError(f"{directory}: several default regions: {', '.join(defaults)}")
    return regions


def default_region(regions: dict[str, Region]) -> Region:
    for region in regions.values():
        if region.default:
            return region
    raise RegionConfigError("no region is marked `default: true`")
