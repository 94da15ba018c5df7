# syntax=docker/dockerfile:1
# Image of docker-compose.yaml (every Airflow component and the Celery workers): Airflow 3.3.2 on
# Python 3.11, Java 17 for Spark local[*], exactly the packages of requirements.lock, and the project
# installed at /opt/snds. Build: `docker compose build` (docs/deployment.md). Docker is not available
# on the development machines: tests/test_deployment.py checks this file's structure instead.

# uv, the Makefile's UV_VERSION, taken from its own image: it is not a package of the Airflow
# environment, which ends up holding only the lock's packages and the project.
ARG UV_VERSION=0.13.9
FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM apache/airflow:3.3.2-python3.11
SHELL ["/bin/bash", "-o", "pipefail", "-o", "errexit", "-o", "nounset", "-c"]

USER root
# Java 17 for Spark (pyspark's spark-submit). JAVA_HOME: an architecture-neutral link to the JRE.
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/java-17 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/java-17
COPY --from=uv /uv /usr/local/bin/uv
# /opt/snds: the project. /opt/airflow/auth: the api-server's SimpleAuthManager passwords (a named
# volume in docker-compose.yaml; a new volume takes this directory's owner and mode).
RUN mkdir -p /opt/snds /opt/airflow/auth \
    && chown airflow:0 /opt/snds /opt/airflow/auth \
    && chmod 0770 /opt/airflow/auth

USER airflow
WORKDIR /opt/snds
# The image's Airflow virtualenv is /home/airflow/.local (VIRTUAL_ENV; its bin/ is first on PATH, so
# `python`, `airflow` and pyspark's `spark-submit` all come from it).
ENV UV_NO_CACHE=1 \
    UV_LINK_MODE=copy \
    SNDS_PYTHON=/home/airflow/.local/bin/python

# 1. Exactly the lock. `uv pip sync` installs what requirements.lock pins and removes everything else
#    the base image had (its other providers and their dependencies), except the installers it
#    always keeps (pip, uv, wheel), removed next. pyspark-client is not in the lock (overrides.txt).
COPY --chown=airflow:0 requirements.lock /opt/snds/requirements.lock
RUN uv pip sync --python "${SNDS_PYTHON}" /opt/snds/requirements.lock \
    && uv pip uninstall --python "${SNDS_PYTHON}" pip uv wheel

# 2. The project, without dependencies, built with the lock's setuptools (no build isolation: nothing
#    outside the lock is downloaded). .dockerignore keeps var/, .venv/, .git/ and .env out of the
#    context. docker-compose.yaml mounts dags/, plugins/, config/ and sql/ read-only over these copies.
COPY --chown=airflow:0 . /opt/snds
RUN uv pip install --python "${SNDS_PYTHON}" --no-deps --no-build-isolation -e /opt/snds

# 3. Checks. pyspark is 4.3 (pyspark-client, which apache-airflow-providers-apache-spark requires,
#    would overwrite its Python files with 4.2's).
RUN python -c "import pyspark; assert pyspark.__version__.startswith('4.3'), 'pyspark ' + pyspark.__version__"
# The environment holds exactly the lock (same versions, nothing more) and the project.
RUN python - <<'EOF'
import importlib.metadata as md
import re

from packaging.requirements import Requirement

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

locked = {}
for line in open("/opt/snds/requirements.lock", encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if line:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate():
            locked[norm(req.name)] = str(req.specifier).removeprefix("==")
installed = {norm(d.metadata["Name"]): d.version for d in md.distributions() if d.metadata["Name"]}
extra = sorted(set(installed) - set(locked) - {"snds-lake"})
missing = sorted(set(locked) - set(installed))
wrong = sorted(f"{n} {installed[n]} (lock: {v})" for n, v in locked.items() if n in installed and installed[n] != v)
assert not (extra or missing or wrong), f"not the lock: extra={extra} missing={missing} wrong={wrong}"
print(f"environment == requirements.lock ({len(locked)} packages) + snds-lake")
EOF
RUN command -v spark-submit \
    && "${JAVA_HOME}/bin/java" -version \
    && python -c "import snds_operators, spark_jobs"
