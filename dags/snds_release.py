"""Airflow DAGs of each region of config/regions/*.yaml ($SNDS_REGIONS narrows them): the release
pipeline (snds_release__<region>), the landing watch (snds_landing_watch__<region>), the vault key
rotation (snds_key_rotation__<region>) and the study cohorts built on each publication
(snds_cohorts__<region>).

Thin on purpose: the factory and the operators live in plugins/snds_operators, the steps in spark_jobs.
"""

from snds_operators.factory import build_dags

globals().update(build_dags())
