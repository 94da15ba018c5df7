"""Region configurations (config/regions/*.yaml): where a region's data lives, which keys protect it,
which engine and connections run it.

Loading a region (at DAG-parse time) validates the file against config/schemas/region.schema.json
(unknown keys and missing fields name the file and the key), applies the deployment's variant
(`SNDS_DEPLOYMENT`, default `local`: this machine) and enforces sovereignty:
- every storage location (lake, landing zone, code, vault, key file, EMR logs) is under the region's
  own allowed roots: its S3 buckets, which must all be in the region's `cloud_region`, or its local
  directories;
- the KMS key is in the region's cloud region;
- no bucket, local root, connection, key, EMR application or cluster, or Spark master is shared with
  another region.
A region that breaks a rule is refused with a RegionConfigError, i.e. an import error of the DAG file
that says why. Cheap to import (PyYAML and jsonschema only).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spark_jobs.uris import SovereigntyError, check_within, is_s3, is_within, normalize
from spark_jobs.vault import paths_overlap

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
REGIONS_DIR = PROJECT_ROOT / "config" / "regions"
SCHEMA_PATH = PROJECT_ROOT / "config" / "schemas" / "region.schema.json"
#: Deployment engines. The job-level engine is duckdb for `duckdb`, spark for all the others.
ENGINES = ("duckdb", "spark-local", "spark-standalone", "emr-serverless", "emr")
#: Engines that run the job code from an uploaded bundle (zip + entry scripts), not from this checkout.
BUNDLE_ENGINES = ("spark-standalone", "emr-serverless", "emr")
ENGINE_ALIASES = {"spark": "spark-local"}
DEPLOYMENTS = ("local", "production")


class RegionConfigError(ValueError):
    """A region file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Region:
    name: str
    source: Path
    deployment: str
    cloud_region: str
    engine: str
    ingest_config: str
    lake_root: str
    landing_root: str
    code_root: str
    vault_root: str
    key_provider: dict  # local_file (path resolved) or aws_kms; see config/regions/local.yaml
    argon2: dict
    allowed_roots: tuple[str, ...]
    connections: dict
    audit: dict  # {type: sqlite, path} (resolved) or {type: connection, connection}
    default: bool = False
    description: str = ""
    duckdb: dict = field(default_factory=dict)
    spark: dict = field(default_factory=dict)
    emr_serverless: dict = field(default_factory=dict)
    emr: dict = field(default_factory=dict)
    schedule: dict = field(default_factory=dict)
    landing: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)
    profile: str = "native"  # the delivery profile of the region's deliveries (config/profiles/<name>.yaml)
    max_active_runs: int = 1

    @property
    def job_engine(self) -> str:
        """The engine the step entry points run on (`--engine`)."""
        return "duckdb" if self.engine == "duckdb" else "spark"

    @property
    def spark_conn_id(self) -> str | None:
        return self.connections.get("spark")

    @property
    def aws_conn_id(self) -> str | None:
        return self.connections.get("aws")

    @property
    def uses_aws(self) -> bool:
        """Whether anything of the region is on AWS (S3 storage, KMS key, EMR)."""
        return (self.engine in ("emr-serverless", "emr") or self.key_provider["type"] == "aws_kms"
                or any(is_s3(u) for u in (self.lake_root, self.landing_root, self.code_root, self.vault_root)))

    def pseudonymisation_args(self, argon2: bool = True) -> list[str]:
        """The step arguments naming the region's vault, key provider and (with `argon2`) argon2
        parameters."""
        kp = self.key_provider
        if kp["type"] == "local_file":
            keys = ["--key-file", str(kp["path"])]
        else:
            keys = ["--kms-key-arn", kp["key_arn"], "--kms-region", kp["region_name"]]
        args = ["--vault", self.vault_root, *keys]
        if argon2:
            a = self.argon2
            args += ["--argon2-time-cost", str(a["time_cost"]), "--argon2-memory-kib", str(a["memory_cost_kib"]),
                     "--argon2-parallelism", str(a["parallelism"])]
        return args

    def audit_url(self, get_connection=None) -> str:
        """The audit database's SQLAlchemy URL: the SQLite file, or the URI of the region's audit
        connection (`get_connection(conn_id)`, Airflow's BaseHook.get_connection by default)."""
        if self.audit["type"] == "sqlite":
            return f"sqlite:///{self.audit['path']}"
        if get_connection is None:
            from airflow.sdk import BaseHook

            get_connection = BaseHook.get_connection
        return get_connection(self.audit["connection"]).get_uri()

    def allowed_root_args(self) -> list[str]:
        """`--allowed-root R` for each root: every job re-checks its locations against them."""
        return [a for root in self.allowed_roots for a in ("--allowed-root", root)]

    def check_location(self, uri: str, what: str = "location") -> str:
        """`uri` normalized, or SovereigntyError if it leaves the region's storage."""
        return check_within(uri, self.allowed_roots, f"region {self.name}: {what}")


def configure_lake_io(region: Region) -> None:
    """Reach the region's S3 lake with its own AWS connection (code reading or writing the lake in the
    Airflow worker or a local command: summarize, publish, localrun); nothing to do for a local lake."""
    if region.uses_aws:
        from spark_jobs import lakefs
        from spark_jobs.objectstore import aws_environment

        lakefs.configure_s3(aws_environment(region.aws_conn_id, region.cloud_region))


# --- loading -------------------------------------------------------------------------------------------
def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def _partial(schema):
    """The schema with `required` dropped everywhere: what a variant (an override) must satisfy."""
    if isinstance(schema, dict):
        return {k: _partial(v) for k, v in schema.items() if k != "required"}
    if isinstance(schema, list):
        return [_partial(v) for v in schema]
    return schema


def _validate(path: Path, data: dict, schema: dict, where: str = "") -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))
    if not errors:
        return
    problems = []
    for e in errors[:5]:
        key = where + ".".join(str(p) for p in e.absolute_path)
        if e.validator == "additionalProperties":
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            problems.append(f"{(key + '.') if key else ''}{', '.join(extra)}: unknown key")
        elif e.validator == "required":
            problems.append(f"{key or '(top level)'}: {e.message.replace(' is a required property', '')} missing")
        elif e.validator == "oneOf" and isinstance(e.instance, dict) and "type" in e.instance:
            problems.append(f"{key}: not a valid {e.instance['type']!r} entry (see {SCHEMA_PATH.name})")
        else:
            problems.append(f"{key or '(top level)'}: {e.message}")
    raise RegionConfigError(f"{path}: " + "; ".join(problems))


def _merge(base: dict, override: dict) -> dict:
    """`override` on `base`, recursively; an empty mapping, or one with a `type` key, replaces the base's."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and value and isinstance(out.get(key), dict) and "type" not in value:
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_local(uri: str) -> str:
    """A local location as an absolute path (relative to the project root); s3:// URIs unchanged."""
    return normalize(uri) if is_s3(uri) else normalize(uri, PROJECT_ROOT)


def deployment() -> str:
    value = os.environ.get("SNDS_DEPLOYMENT", "local")
    if value not in DEPLOYMENTS:
        raise RegionConfigError(f"SNDS_DEPLOYMENT={value!r}: expected one of {', '.join(DEPLOYMENTS)}")
    return value


def load_region(path: Path, deployment_name: str | None = None) -> Region:
    path = Path(path)
    deployment_name = deployment_name or deployment()
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise RegionConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise RegionConfigError(f"{path}: expected a mapping")
    schema = _schema()
    variant = (raw.get("variants") or {}).get(deployment_name) if isinstance(raw.get("variants"), dict) else None
    if variant is not None:
        base_props = {k: v for k, v in schema["properties"].items() if k not in ("region", "variants")}
        _validate(path, variant, _partial({**schema, "properties": base_props}), f"variants.{deployment_name}.")
    _validate(path, raw, schema)
    cfg = _merge(raw, variant or {})
    cfg.pop("variants", None)
    _validate(path, cfg, schema)
    if cfg["region"] != path.stem:
        raise RegionConfigError(f"{path}: region: {cfg['region']!r} must match the file name {path.stem!r}")
    engine = os.environ.get("SNDS_ENGINE") or cfg["engine"]
    engine = ENGINE_ALIASES.get(engine, engine)
    if engine not in ENGINES:
        raise RegionConfigError(f"{path}: engine: {engine!r} is not one of {', '.join(ENGINES)}")
    return _build(path, cfg, engine, deployment_name)


def _build(path: Path, cfg: dict, engine: str, deployment_name: str) -> Region:
    name, cloud = cfg["region"], cfg["cloud_region"]
    storage, conns = cfg["storage"], dict(cfg["connections"] or {})
    buckets = storage.get("buckets") or {}
    for bucket, bucket_region in buckets.items():
        if bucket_region != cloud:  # data stored outside the region's own cloud region
            raise RegionConfigError(f"{path}: storage.buckets.{bucket}: in {bucket_region}, "
                                    f"but region {name} is in {cloud}")
    roots = tuple([f"s3://{b}" for b in sorted(buckets)]
                  + [_resolve_local(r) for r in storage.get("local_roots") or []])
    if not roots:
        raise RegionConfigError(f"{path}: storage: no buckets and no local_roots: the region may store nothing")

    def located(key: str, value: str) -> str:
        if is_s3(value) and cloud == "local":
            raise RegionConfigError(f"{path}: {key}: {value!r} is on S3 but the region is local")
        try:
            return check_within(_resolve_local(value), roots, key)
        except (SovereigntyError, ValueError) as exc:
            raise RegionConfigError(f"{path}: {key}: {exc}") from None

    lake = located("storage.lake_root", storage["lake_root"])
    landing = located("storage.landing_root", storage["landing_root"])
    code = located("storage.code_root", storage["code_root"])
    pseudo = cfg["pseudonymisation"]
    vault = located("pseudonymisation.vault_root", pseudo["vault_root"])
    if paths_overlap(vault, lake):
        raise RegionConfigError(f"{path}: pseudonymisation.vault_root {vault} overlaps lake_root {lake}: "
                                "the vault must be stored apart from the lake")
    kp = dict(pseudo["key_provider"])
    if kp["type"] == "local_file":
        kp["path"] = located("pseudonymisation.key_provider.path", kp["path"])
        if paths_overlap(kp["path"], lake):
            raise RegionConfigError(f"{path}: pseudonymisation.key_provider.path {kp['path']} is inside the lake")
    else:
        key_region = kp["key_arn"].split(":")[3]
        if key_region != cloud or kp["region_name"] != cloud:
            raise RegionConfigError(f"{path}: pseudonymisation.key_provider: KMS key in {key_region} "
                                    f"(region_name {kp['region_name']}), but region {name} is in {cloud}")
        kp.setdefault("aws_conn_id", conns.get("aws"))
        if kp["aws_conn_id"] != conns.get("aws"):
            raise RegionConfigError(f"{path}: pseudonymisation.key_provider.aws_conn_id {kp['aws_conn_id']!r} "
                                    f"is not the region's AWS connection {conns.get('aws')!r}")
    audit = dict(cfg["audit"])
    if audit["type"] == "sqlite":
        if is_s3(audit["path"]):
            raise RegionConfigError(f"{path}: audit.path: a SQLite audit database is a local file")
        audit["path"] = located("audit.path", audit["path"])
    argon2 = {"time_cost": 2, "memory_cost_kib": 19 * 1024, "parallelism": 1, **(pseudo.get("argon2") or {})}

    spark = dict(cfg.get("spark") or {})
    emr_serverless, emr = dict(cfg.get("emr_serverless") or {}), dict(cfg.get("emr") or {})
    needs = {"spark-local": ("spark", "spark"), "spark-standalone": ("spark", "spark"),
             "emr-serverless": ("emr_serverless", "aws"), "emr": ("emr", "aws")}
    if engine in needs:
        section, conn = needs[engine]
        if not cfg.get(section):
            raise RegionConfigError(f"{path}: {section}: required when the engine is {engine}")
        if not conns.get(conn):
            raise RegionConfigError(f"{path}: connections.{conn}: required when the engine is {engine}")
    if engine in ("spark-local", "spark-standalone") and not spark.get("master"):
        raise RegionConfigError(f"{path}: spark.master: required when the engine is {engine}")
    if engine == "spark-local" and not str(spark["master"]).startswith("local"):
        raise RegionConfigError(f"{path}: spark.master: {spark['master']!r} is not local[...] (engine spark-local)")
    if engine == "spark-standalone" and not str(spark["master"]).startswith("spark://"):
        raise RegionConfigError(f"{path}: spark.master: {spark['master']!r} is not spark://host:port (engine spark-standalone)")
    for section, values in (("emr_serverless", emr_serverless), ("emr", emr)):
        if engine == section.replace("_", "-") and values.get("log_uri"):
            values["log_uri"] = located(f"{section}.log_uri", values["log_uri"])
    uses_s3 = any(is_s3(u) for u in (lake, landing, code, vault))
    if (uses_s3 or kp["type"] == "aws_kms") and not conns.get("aws"):
        raise RegionConfigError(f"{path}: connections.aws: required, the region uses S3 or KMS")
    lineage = dict(cfg["lineage"])
    if lineage.get("transport", {}).get("type") == "file":
        lineage["transport"] = {**lineage["transport"],
                                "log_file_path": _resolve_local(lineage["transport"]["log_file_path"])}
    return Region(
        name=name, source=path, deployment=deployment_name, cloud_region=cloud, engine=engine,
        ingest_config=cfg["ingest_config"], lake_root=lake, landing_root=landing, code_root=code,
        vault_root=vault, key_provider=kp, argon2=argon2, allowed_roots=roots, connections=conns, audit=audit,
        default=bool(cfg.get("default", False)), description=cfg.get("description", ""),
        duckdb=dict(cfg.get("duckdb") or {}), spark=spark, emr_serverless=emr_serverless, emr=emr,
        schedule=dict(cfg.get("schedule") or {}), landing=dict(cfg.get("landing") or {}), lineage=lineage,
        max_active_runs=int(cfg.get("max_active_runs", 1)), profile=_profile(path, cfg.get("profile") or "native"),
    )


def _profile(path, name: str) -> str:
    """The region's default delivery profile: a file under config/profiles/, or `auto`."""
    from spark_jobs.profiles import AUTO, ProfileError, load_profile

    if name != AUTO:
        try:
            load_profile(name)
        except ProfileError as exc:
            raise RegionConfigError(f"{path}: profile: {exc}") from None
    return name


def _resources(region: Region) -> dict[str, str]:
    """What a region claims for itself: resource key -> how to name it, for the cross-region check."""
    claimed = {root: f"storage root {root}" for root in region.allowed_roots}
    for kind, conn in region.connections.items():
        claimed[f"connection:{conn}"] = f"connections.{kind} {conn!r}"
    if region.key_provider["type"] == "aws_kms":
        claimed[f"kms:{region.key_provider['key_arn']}"] = f"KMS key {region.key_provider['key_arn']}"
    if region.emr_serverless.get("application_id"):
        app = region.emr_serverless["application_id"]
        claimed[f"emr-serverless:{app}"] = f"EMR Serverless application {app}"
    if region.emr.get("cluster_id"):
        claimed[f"emr:{region.emr['cluster_id']}"] = f"EMR cluster {region.emr['cluster_id']}"
    if region.engine == "spark-standalone":
        claimed[f"spark:{region.spark['master']}"] = f"Spark master {region.spark['master']}"
    if region.audit["type"] == "connection":
        claimed[f"connection:{region.audit['connection']}"] = f"audit.connection {region.audit['connection']!r}"
    claimed[f"lineage:{region.lineage['namespace']}"] = f"lineage namespace {region.lineage['namespace']}"
    return claimed


def check_cross_region(regions: dict[str, Region]) -> None:
    """Refuses a bucket, local root, connection, key, cluster or namespace shared by two regions (or a
    storage root of one inside another's)."""
    owners: dict[str, Region] = {}
    for region in regions.values():
        for resource, label in _resources(region).items():
            if resource in owners:
                owner = owners[resource]
                raise RegionConfigError(f"{region.source}: {label} belongs to region {owner.name} "
                                        f"({owner.source.name}); a region uses only its own resources")
            owners[resource] = region
    roots = [(root, r.name, r.source) for r in regions.values() for root in r.allowed_roots]
    for root, name, source in roots:
        for other, other_name, _ in roots:
            if other_name != name and (root == other or root.startswith(other.rstrip("/") + "/")):
                raise RegionConfigError(f"{source}: storage root {root} is inside {other}, "
                                        f"which belongs to region {other_name}")
    # A location of one region must not point into another's storage (e.g. a vault in a foreign bucket).
    for region in regions.values():
        for what, uri in (("lake_root", region.lake_root), ("landing_root", region.landing_root),
                          ("code_root", region.code_root), ("vault_root", region.vault_root)):
            for other in regions.values():
                if other.name != region.name and any(is_within(uri, r) for r in other.allowed_roots):
                    raise RegionConfigError(f"{region.source}: {what} {uri} is in the storage of region "
                                            f"{other.name}")


def load_regions(directory: Path | None = None, deployment_name: str | None = None) -> dict[str, Region]:
    """Every region of `directory` (default: config/regions, or $SNDS_REGIONS_DIR), for the deployment
    (default $SNDS_DEPLOYMENT or `local`). Regions with `cloud_region: local` exist only locally. All
    regions are loaded for the cross-region checks; `selected_regions` narrows to $SNDS_REGIONS."""
    directory = Path(directory or os.environ.get("SNDS_REGIONS_DIR") or REGIONS_DIR)
    deployment_name = deployment_name or deployment()
    regions = {}
    for path in sorted(directory.glob("*.yaml")):
        region = load_region(path, deployment_name)
        if deployment_name == "production" and region.cloud_region == "local":
            continue
        regions[region.name] = region
    check_cross_region(regions)
    defaults = [r.name for r in regions.values() if r.default]
    if len(defaults) > 1:
        raise RegionConfigError(f"{directory}: several default regions: {', '.join(defaults)}")
    return regions


def selected_regions(regions: dict[str, Region]) -> dict[str, Region]:
    """The regions this Airflow runs: $SNDS_REGIONS (comma-separated; one jurisdiction per Airflow in
    production), or all of them."""
    wanted = [r.strip() for r in os.environ.get("SNDS_REGIONS", "").split(",") if r.strip()]
    unknown = sorted(set(wanted) - set(regions))
    if unknown:
        raise RegionConfigError(f"SNDS_REGIONS names unknown region(s) {', '.join(unknown)}; "
                                f"known: {', '.join(regions)}")
    return {n: r for n, r in regions.items() if not wanted or n in wanted}


def default_region(regions: dict[str, Region]) -> Region:
    for region in regions.values():
        if region.default:
            return region
    raise RegionConfigError("no region is marked `default: true`")
