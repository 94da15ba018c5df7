"""Region configurations (config/regions/*.yaml): where a region's data lives and which engine runs it.

Cheap to import (PyYAML only): DAG files call this at parse time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
REGIONS_DIR = PROJECT_ROOT / "config" / "regions"
ENGINES = ("duckdb", "spark")

_REQUIRED = ("region", "lake_root", "engine", "ingest_config")
_ALLOWED = set(_REQUIRED) | {"description", "default", "duckdb", "spark"}


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
    description: str = ""

    @property
    def spark_conn_id(self) -> str:
        return self.spark["conn_id"]


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
    return Region(
        name=raw["region"],
        source=path,
        lake_root=_resolve(raw["lake_root"]),
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
