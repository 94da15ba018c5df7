"""The production-like deployment files: docker-compose.yaml, Dockerfile, .dockerignore, .env.example.

Docker is not available on the development machines, so nothing here builds an image or starts a
container: these tests read the files (PyYAML resolves the compose file's anchors and `<<:` merges)
and check their structure, the way `docker compose config` would see it: services, healthchecks,
dependencies, mounts, environment, the variables .env must provide, and how the image is built.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
REGIONS_DIR = ROOT / "config" / "regions"

AIRFLOW_IMAGE = "apache/airflow:3.3.2-python3.11"
AIRFLOW_SERVICES = {
    "api-server": "airflow-apiserver",
    "scheduler": "airflow-scheduler",
    "dag-processor": "airflow-dag-processor",
    "triggerer": "airflow-triggerer",
    "worker": "airflow-worker",
    "init": "airflow-init",
}
BACKING_SERVICES = ("postgres", "redis")
#: Region id -> AWS region (the production regions of config/regions).
AWS_REGIONS = {"fr-paris": "eu-west-3", "eu-frankfurt": "eu-central-1", "us-east": "us-east-1"}
#: The project's mounts: host path -> container path, all read-only.
PROJECT_MOUNTS = {"./dags": "/opt/snds/dags", "./plugins": "/opt/snds/plugins",
                  "./config": "/opt/snds/config", "./sql": "/opt/snds/sql"}
#: Secrets .env must set (empty in .env.example, so compose refuses an unedited copy).
SECRETS = ("POSTGRES_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY",
           "AIRFLOW__API_AUTH__JWT_SECRET")


# --- readers -----------------------------------------------------------------------------------------

@functools.cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict:
    return compose()["services"]


def airflow_services() -> dict[str, dict]:
    """Every service running the project's image (the six components, plus optional profiles)."""
    return {name: svc for name, svc in services().items() if "build" in svc or name.startswith("airflow-")}


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- KEY=VALUE` form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def parse_dotenv(text: str) -> dict[str, str]:
    """KEY=VALUE lines as compose reads a .env file: comments and blank lines skipped, 'single-quoted'
    values literal, "double-quoted" values unquoted, ` #` starting a comment in unquoted values."""
    values = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f".env.example:{number}: not KEY=VALUE: {raw!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        assert key not in values, f".env.example:{number}: {key} set twice"
        values[key] = value
    return values


@functools.cache
def env_example() -> dict[str, str]:
    return parse_dotenv(ENV_EXAMPLE.read_text(encoding="utf-8"))


def env_filled(**overrides: str) -> dict[str, str]:
    """.env.example with its empty secrets filled in, as an operator's .env would be."""
    env = dict(env_example())
    env.update({name: f"test-{name.lower()}" for name in SECRETS if not env.get(name)})
    env.update(overrides)
    return env


_VAR = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})")


class MissingVariable(KeyError):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}; $$ is $."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise MissingVariable(f"{name}: {arg}")
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return "" if value is None else arg
        return value or ""

    return _VAR.sub(sub, text)


def strings(node):
    """Every string of a parsed YAML tree (keys included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def compose_variables() -> dict[str, str | None]:
    """Each ${VAR} the compose file uses -> its operator (None, ':-', ':?', ...); $$ escapes excluded."""
    used: dict[str, str | None] = {}
    for text in strings(compose()):
        for m in _VAR.finditer(text):
            if m.group(0) != "$$":
                used.setdefault(m.group("name"), m.group("op"))
    return used


def resolved_env(service: str, **overrides: str) -> dict[str, str]:
    env = env_filled(**overrides)
    return {k: interpolate(v, env) for k, v in environment(services()[service]).items()}


def volume_specs(service: dict) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each short-syntax volume."""
    specs = []
    for spec in service.get("volumes") or []:
        assert isinstance(spec, str), f"long volume syntax not expected here: {spec!r}"
        parts = spec.split(":")
        specs.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return specs


@functools.cache
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and heredoc bodies attached to their RUN."""
    instructions, pending, heredoc_end = [], "", None
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if heredoc_end is not None:
            instructions[-1] = (instructions[-1][0], instructions[-1][1] + "\n" + line)
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        heredoc = re.search(r"<<-?\s*['\"]?([A-Za-z_]+)['\"]?", args)
        if heredoc:
            heredoc_end = heredoc.group(1)
    return instructions


def runs() -> list[str]:
    return [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]


def shell_commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN line (split on && / ; / ||), as argument lists; heredoc bodies dropped."""
    lexer = shlex.shlex(run.split("\n", 1)[0], posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in [*commands, current] if c]


@functools.cache
def production_regions() -> dict[str, dict]:
    regions = {}
    for path in sorted(REGIONS_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if raw.get("cloud_region") not in (None, "local"):
            regions[raw["region"]] = raw
    return regions


# --- docker-compose.yaml: services ------------------------------------------------------------------

def test_every_component_and_backing_service_exists():
    missing = [s for s in [*AIRFLOW_SERVICES.values(), *BACKING_SERVICES] if s not in services()]
    assert not missing, f"services missing from docker-compose.yaml: {missing}"
    assert services()["postgres"]["image"] == "postgres:16"
    assert services()["redis"]["image"].startswith("redis:")


def test_yaml_merges_are_resolved_from_the_common_anchor():
    raw = COMPOSE.read_text(encoding="utf-8")
    assert re.search(r"^x-airflow-common: &airflow-common$", raw, re.M), "the shared block is x-airflow-common"
    common = compose()["x-airflow-common"]
    for key in ("image", "build", "environment", "volumes", "user", "depends_on"):
        assert key in common, f"x-airflow-common has no {key}"
    for name in AIRFLOW_SERVICES.values():
        svc = services()[name]
        assert "<<" not in svc, f"{name}: `<<:` merge not resolved"
        assert re.search(rf"^  {name}:\n(?:    #.*\n)*    <<: \*airflow-common$", raw, re.M), \
            f"{name} does not start with `<<: *airflow-common`"
        assert svc["image"] == common["image"] and svc["user"] == common["user"]
        # Services that override `environment:` merge the common one back in: nothing is lost.
        env = environment(svc)
        assert set(environment(common)) <= set(env), f"{name}: common environment missing " \
            f"{sorted(set(environment(common)) - set(env))}"
        for key, value in environment(common).items():
            assert env[key] == value, f"{name}: {key} differs from x-airflow-common"


def test_long_running_services_have_a_healthcheck():
    for name, svc in services().items():
        if name == "airflow-init":
            assert svc.get("restart") == "no", "airflow-init runs once"
            continue
        check = svc.get("healthcheck") or {}
        test = check.get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, \
            f"{name}: healthcheck.test must be a CMD or CMD-SHELL command, got {test!r}"
        assert check.get("interval") and check.get("retries"), f"{name}: healthcheck needs interval and retries"
        assert svc.get("restart") in ("always", "unless-stopped"), f"{name}: should restart"


@pytest.mark.parametrize("service, expected", [
    ("airflow-apiserver", "curl --fail http://localhost:8080/api/v2/version"),
    ("airflow-scheduler", "curl --fail http://localhost:8974/health"),
    ("airflow-dag-processor", 'airflow jobs check --job-type DagProcessorJob --hostname "$${HOSTNAME}"'),
    ("airflow-triggerer", 'airflow jobs check --job-type TriggererJob --hostname "$${HOSTNAME}"'),
    ("airflow-worker", "celery --app airflow.providers.celery.executors.celery_executor.app inspect ping"),
    ("postgres", "pg_isready -U airflow"),
    ("redis", "redis-cli ping"),
])
def test_healthcheck_commands(service, expected):
    command = " ".join(services()[service]["healthcheck"]["test"][1:])
    assert expected in command, f"{service}: healthcheck {command!r} does not run {expected!r}"


def test_scheduler_health_server_is_enabled():
    assert resolved_env("airflow-scheduler")["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"].lower() == "true"


def test_airflow_services_use_the_built_image():
    common = compose()["x-airflow-common"]
    assert common["build"]["context"] == "." and common["build"]["dockerfile"] == "Dockerfile"
    assert (ROOT / common["build"]["dockerfile"]).is_file()
    for name, svc in airflow_services().items():
        assert svc["build"] == common["build"], f"{name}: not built from the repository's Dockerfile"
        assert svc["image"] == common["image"], f"{name}: image {svc['image']!r}"


def test_airflow_services_wait_for_init_and_healthy_backing_services():
    for name, svc in airflow_services().items():
        deps = svc.get("depends_on") or {}
        for backing in BACKING_SERVICES:
            assert deps.get(backing, {}).get("condition") == "service_healthy", \
                f"{name}: must wait for {backing} to be healthy"
        if name != "airflow-init":
            assert deps.get("airflow-init", {}).get("condition") == "service_completed_successfully", \
                f"{name}: must wait for airflow-init to complete"
    assert services()["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"


def test_init_only_migrates_the_database():
    init = services()["airflow-init"]
    assert init["command"] == ["airflow", "db", "migrate"]
    text = COMPOSE.read_text(encoding="utf-8")
    assert "_AIRFLOW_WWW_USER" not in text and "users create" not in text, "no user created by compose"


def test_commands_of_the_components():
    expected = {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer",
                "airflow-worker": "celery worker"}
    for name, command in expected.items():
        assert " ".join(services()[name]["command"]) == f"airflow {command}", name
    assert resolved_env("airflow-worker")["DUMB_INIT_SETSID"] == "0", "worker: warm shutdown of Celery"


# --- docker-compose.yaml: executor, database, broker -------------------------------------------------

def test_celery_executor_on_postgres_and_redis():
    pg_env = {k: interpolate(v, env_filled()) for k, v in environment(services()["postgres"]).items()}
    for name in airflow_services():
        env = resolved_env(name)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        db = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert db.scheme == "postgresql+psycopg2", f"{name}: metadata DB {db.scheme}"
        assert (db.hostname, db.username, db.password, db.path.lstrip("/")) == (
            "postgres", pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"]), name
        result = urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"])
        assert result.scheme == "db+postgresql" and result.hostname == "postgres", name
        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert broker.scheme == "redis" and broker.hostname == "redis", f"{name}: broker {broker.geturl()}"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


def test_shared_secrets_come_from_env_and_are_required():
    common = environment(compose()["x-airflow-common"])
    for name in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]*\}}", common[name]), f"{name} must be ${{{name}:?...}}"
    assert "${POSTGRES_PASSWORD:?" in common["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "${POSTGRES_PASSWORD:?" in environment(services()["postgres"])["POSTGRES_PASSWORD"]


def test_backing_services_are_not_published():
    for name in BACKING_SERVICES:
        assert not services()[name].get("ports"), f"{name} must not be published on the host"


def test_api_server_publishes_8080():
    ports = [interpolate(str(p), env_filled()) for p in services()["airflow-apiserver"]["ports"]]
    assert any(p.split(":")[-2:] == ["8080", "8080"] for p in ports), ports
    # Bound to localhost unless the operator says otherwise.
    bound = [interpolate(str(p), {}) for p in services()["airflow-apiserver"]["ports"]]
    assert all(p.startswith("127.0.0.1:") for p in bound), bound


def test_simple_auth_manager_passwords_persist_on_the_api_server_only():
    api = resolved_env("airflow-apiserver")
    path = api["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    targets = {target: source for source, target, _ in volume_specs(services()["airflow-apiserver"])}
    directory = str(Path(path).parent)
    assert directory in targets and targets[directory] in compose()["volumes"], \
        f"{directory} must be a named volume of the api-server"
    assert any(directory in args for keyword, args in dockerfile_instructions() if keyword == "RUN"), \
        f"the image must create {directory} (owned by airflow) for the volume to be writable"
    for name in airflow_services():
        if name != "airflow-apiserver":
            assert directory not in {t for _, t, _ in volume_specs(services()[name])}, f"{name} mounts {directory}"
    assert resolved_env("airflow-scheduler")["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]


# --- docker-compose.yaml: mounts ---------------------------------------------------------------------

def test_project_directories_mounted_read_only_where_the_env_points():
    for name, svc in airflow_services().items():
        mounts = {source: (target, mode) for source, target, mode in volume_specs(svc)}
        for source, target in PROJECT_MOUNTS.items():
            assert mounts.get(source) == (target, "ro"), f"{name}: {source} must be mounted at {target}:ro"
        env = resolved_env(name)
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == PROJECT_MOUNTS["./dags"], name
        assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == PROJECT_MOUNTS["./plugins"], name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false", name


def test_mounted_host_paths_exist_in_the_repository():
    for name, svc in airflow_services().items():
        for source, _, _ in volume_specs(svc):
            if source.startswith((".", "/")):
                assert (ROOT / source).resolve().is_dir(), f"{name}: {source} is not a directory of the repo"


def test_no_local_data_is_mounted_and_logs_go_to_a_named_volume():
    named = compose()["volumes"]
    for name, svc in services().items():
        for source, target, _ in volume_specs(svc):
            host = source.startswith((".", "/", "$"))
            assert not (host and source.lstrip("./").split("/")[0] in ("var", ".venv")), \
                f"{name}: {source} (lake, vault and deliveries are on S3 in production)"
            assert host or source in named, f"{name}: volume {source} not declared"
        if name in airflow_services():
            assert ("airflow-logs", "/opt/airflow/logs", "rw") in volume_specs(svc), f"{name}: logs volume"


# --- docker-compose.yaml: region, lineage, Spark -------------------------------------------------------

def test_region_comes_from_env():
    for name, svc in airflow_services().items():
        env = environment(svc)
        assert env["SNDS_DEPLOYMENT"] == "production", name
        assert re.fullmatch(r"\$\{SNDS_REGION:\?[^}]*\}", env["SNDS_REGIONS"]), f"{name}: SNDS_REGIONS required"
        resolved = resolved_env(name, SNDS_REGION="eu-frankfurt")
        assert resolved["SNDS_REGIONS"] == "eu-frankfurt"
        assert resolved["AIRFLOW__OPENLINEAGE__NAMESPACE"] == "snds-eu-frankfurt"
    with pytest.raises(MissingVariable, match="SNDS_REGION"):
        interpolate(environment(services()["airflow-scheduler"])["SNDS_REGIONS"], {})


def test_openlineage_transport_from_env_and_namespace_per_region():
    env = environment(compose()["x-airflow-common"])
    assert env["AIRFLOW__OPENLINEAGE__TRANSPORT"].startswith("${AIRFLOW__OPENLINEAGE__TRANSPORT")
    transport = json.loads(resolved_env("airflow-worker")["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport == {"type": "console"}
    for region, raw in production_regions().items():
        expected = interpolate(env["AIRFLOW__OPENLINEAGE__NAMESPACE"], {"SNDS_REGION": region})
        assert raw["lineage"]["namespace"] == expected, f"{region}: lineage namespace vs compose's {expected}"


def test_region_ids_are_the_production_regions():
    regions = production_regions()
    assert set(regions) == set(AWS_REGIONS), f"config/regions production regions {sorted(regions)}"
    for region, raw in regions.items():
        assert raw["cloud_region"] == AWS_REGIONS[region], region
    assert env_example()["SNDS_REGION"] in AWS_REGIONS


def test_connections_come_from_the_env_file():
    for name, svc in airflow_services().items():
        files = [f if isinstance(f, str) else f["path"] for f in svc.get("env_file") or []]
        assert files == [".env"], f"{name}: AIRFLOW_CONN_* come from .env (env_file), got {files}"
    for name in BACKING_SERVICES:
        assert "env_file" not in services()[name], f"{name} needs none of the Airflow secrets"


def test_spark_local_settings_on_the_workers():
    env = resolved_env("airflow-worker")
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert env["PYSPARK_PYTHON"].startswith("/home/airflow/.local/bin/")


# --- docker-compose.yaml <-> .env.example --------------------------------------------------------------

def test_every_required_variable_is_in_env_example():
    documented = env_example()
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for name, op in compose_variables().items():
        if op is None or "?" in op:
            assert name in documented, f"${{{name}}} has no default: set it in .env.example"
        else:  # with a default: still explained there
            assert re.search(rf"^#?\s*{name}=", text, re.M), f"${{{name}}} is not documented in .env.example"


def test_an_unedited_copy_of_env_example_is_refused():
    """The secrets are empty in .env.example: compose stops on ${VAR:?...} instead of using a default."""
    for name in SECRETS:
        assert env_example()[name] == "", f"{name} must be empty in .env.example (no default secret)"
    with pytest.raises(MissingVariable):
        for text in strings(compose()):
            interpolate(text, env_example())
    for text in strings(compose()):  # filled in, everything resolves
        interpolate(text, env_filled())


# --- .env.example --------------------------------------------------------------------------------------

def test_env_example_connections_are_json_with_a_conn_type():
    conns = {k: v for k, v in env_example().items() if k.startswith("AIRFLOW_CONN_")}
    assert conns, "no AIRFLOW_CONN_* in .env.example"
    for key, value in conns.items():
        conn = json.loads(value)
        assert isinstance(conn, dict) and conn.get("conn_type"), f"{key}: JSON with a conn_type expected"
        for secret in ("password", "aws_secret_access_key", "aws_access_key_id"):
            assert secret not in value, f"{key}: no credentials in .env.example"


def _extra(conn: dict) -> dict:
    extra = conn.get("extra") or {}
    return json.loads(extra) if isinstance(extra, str) else extra


def test_env_example_aws_connections_are_in_their_region():
    aws = {k: json.loads(v) for k, v in env_example().items()
           if k.startswith("AIRFLOW_CONN_") and json.loads(v)["conn_type"] == "aws"}
    by_suffix = {region.replace("-", "_").upper(): cloud for region, cloud in AWS_REGIONS.items()}
    assert {f"AIRFLOW_CONN_AWS_{s}" for s in by_suffix} <= set(aws), sorted(aws)
    for key, conn in aws.items():
        suffix = next((s for s in by_suffix if key.endswith("_" + s)), None)
        assert suffix, f"{key}: name does not end with a region ({', '.join(by_suffix)})"
        assert _extra(conn).get("region_name") == by_suffix[suffix], \
            f"{key}: region_name {_extra(conn).get('region_name')!r}, expected {by_suffix[suffix]}"


def test_env_example_defines_the_connections_the_regions_name():
    conns = {k.removeprefix("AIRFLOW_CONN_").lower(): json.loads(v)
             for k, v in env_example().items() if k.startswith("AIRFLOW_CONN_")}
    for region, raw in production_regions().items():
        for kind, conn_id in (raw.get("connections") or {}).items():
            assert conn_id in conns, f"{region}: connection {conn_id} missing from .env.example"
            conn = conns[conn_id]
            if kind == "aws":
                assert conn["conn_type"] == "aws" and _extra(conn)["region_name"] == raw["cloud_region"], conn_id
            if kind == "spark":
                assert conn["conn_type"] == "spark" and conn["host"] == raw["spark"]["master"], \
                    f"{conn_id}: host must be the region's spark.master {raw['spark']['master']}"
        audit = raw["audit"]
        assert audit["type"] == "connection", f"{region}: production audits into its PostgreSQL connection"
        assert conns.get(audit["connection"], {}).get("conn_type") == "postgres", \
            f"{region}: audit connection {audit['connection']} missing from .env.example or not postgres"


def test_env_example_openlineage_transport_is_json():
    transport = json.loads(env_example()["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport.get("type") == "console"


# --- Dockerfile and .dockerignore ----------------------------------------------------------------------

def test_dockerfile_base_image():
    froms = [args.split()[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert froms[-1] == AIRFLOW_IMAGE, f"final stage FROM {froms[-1]}"


def test_dockerfile_installs_java_17_and_sets_java_home():
    apt = [cmd for run in runs() for cmd in shell_commands(run) if cmd[:2] == ["apt-get", "install"]]
    assert any("openjdk-17-jre-headless" in cmd for cmd in apt), apt
    env = " ".join(args for keyword, args in dockerfile_instructions() if keyword == "ENV")
    assert re.search(r"\bJAVA_HOME=/usr/lib/jvm/\S+", env), "JAVA_HOME not set"


def test_dockerfile_uses_the_pinned_uv():
    make_uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M).group(1)
    args = [a for keyword, a in dockerfile_instructions() if keyword == "ARG" and a.startswith("UV_VERSION=")]
    assert args == [f"UV_VERSION={make_uv}"], f"uv {args}, Makefile pins {make_uv}"
    assert ("FROM", "ghcr.io/astral-sh/uv:${UV_VERSION} AS uv") in dockerfile_instructions()
    assert any(k == "COPY" and a.startswith("--from=uv ") for k, a in dockerfile_instructions())


def test_dockerfile_installs_exactly_the_lock_then_the_project():
    commands = [cmd for run in runs() for cmd in shell_commands(run)]
    installs = [c for c in commands if re.search(r"\b(pip3? install|uv (pip )?(install|sync|add))\b", " ".join(c))]
    lock = [c for c in installs if c[:3] == ["uv", "pip", "sync"] or (c[:3] == ["uv", "pip", "install"] and "-r" in c)]
    assert len(lock) == 1, f"one install from the lock expected, got {lock}"
    operands = [a for i, a in enumerate(lock[0][3:], 3)
                if not a.startswith("-") and lock[0][i - 1] not in ("--python", "-p")]
    assert [Path(a).name for a in operands] == ["requirements.lock"], f"the lock and nothing else: {lock[0]}"
    project = [c for c in installs if c[:3] == ["uv", "pip", "install"] and "-e" in c]
    assert len(project) == 1 and "--no-deps" in project[0], f"the project must be installed --no-deps: {project}"
    assert project[0][project[0].index("-e") + 1] == "/opt/snds"
    assert installs == [lock[0], project[0]], f"nothing else may be installed (no unpinned extras): {installs}"
    copies = [shlex.split(a) for k, a in dockerfile_instructions() if k == "COPY"]
    lock_copy = next(i for i, c in enumerate(copies) if Path(c[-2]).name == "requirements.lock")
    context_copy = next(i for i, c in enumerate(copies) if c[-2] == ".")
    assert lock_copy < context_copy, "the lock is copied (and installed) before the rest of the project"


def test_dockerfile_checks_pyspark_4_3():
    assert any("import pyspark" in run and "startswith('4.3')" in run for run in runs()), \
        "a RUN line must check pyspark 4.3 (pyspark-client must not overwrite it)"


def test_dockerfile_copies_nothing_from_var_or_venv():
    for keyword, args in dockerfile_instructions():
        if keyword in ("COPY", "ADD"):
            sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
            for source in sources:
                top = source.lstrip("./").split("/")[0]
                assert top not in ("var", ".venv", ".git", ".env"), f"{keyword} {args}"


def test_dockerignore_keeps_data_venv_git_and_secrets_out():
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")}
    for required in ("var", ".venv", ".git", ".env"):
        assert required in patterns, f".dockerignore must exclude {required}"
    assert "!.env.example" in patterns or ".env.*" not in patterns
    # The project install needs these in the context.
    for needed in ("pyproject.toml", "README.md", "requirements.lock", "dags", "plugins", "spark_jobs"):
        assert needed not in patterns and (ROOT / needed).exists(), needed
