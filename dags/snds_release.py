"""Airflow DAGs of each region of config/regions/*.yaml: the release pipeline (snds_release__<region>)
and the vault key rotation (snds_key_rotation__<region>).

Thin on purpose: the factory and the operators live in plugins/snds_operators, the steps in spark_jobs.
"""

from snds_operators.factory import build_release_dags

globals().update(build_release_dags())
