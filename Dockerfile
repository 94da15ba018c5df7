# Image for a real deployment (docker-compose.yaml): Airflow 3.3 + the project's locked dependencies
# + Java 17 for Spark. Not buildable on the development machines here (no Docker engine).
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
USER airflow
COPY --chown=airflow:root requirements.lock /opt/snds/requirements.lock
RUN pip install --no-cache-dir uv==0.13.9 \
    && uv pip install --no-cache --python "$(command -v python)" -r /opt/snds/requirements.lock \
       "apache-airflow-providers-postgres" "psycopg2-binary" "asyncpg"
COPY --chown=airflow:root . /opt/snds
RUN uv pip install --no-cache --python "$(command -v python)" --no-deps -e /opt/snds
WORKDIR /opt/snds
