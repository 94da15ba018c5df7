"""Airflow side of the pipeline: region configs, the DAG factory and the step operators."""
