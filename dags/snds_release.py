"""Airflow release DAGs, one per region of config/regions/*.yaml (dag id snds_release__<region>).

Thin on purpose: the factory and the operators live in plugins/snds_operators, the steps in spark_jobs.
"""

from snds_operators.factory import build_release_dags

globals().update(build_release_dags())
