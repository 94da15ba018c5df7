"""Loads the step SQL from sql/ and renders it.

SQL files are Jinja templates in DuckDB's dialect: Jinja only fills in what the configuration and
the table schemas decide (column lists, code lists, thresholds), never engine differences. The engine
adapter transpiles the rendered SQL with sqlglot when it runs on Spark.
"""

from __future__ import annotations

import os
from pathlib import Path

import jinja2

from spark_jobs.bundle import project_dir

#: Root of the SQL tree (in the checkout, or extracted from the code bundle); SNDS_SQL_DIR overrides it.
SQL_DIR = Path(os.environ.get("SNDS_SQL_DIR") or project_dir() / "sql")


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_list(values) -> str:
    """A list of code values as the inside of `IN (...)`: numbers as numbers, text quoted."""
    values = list(values)
    if not values:
        raise ValueError("an empty code list cannot be used in IN (...)")
    return ", ".join(str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else sql_string(v)
                     for v in values)


def ident(name: str) -> str:
    """A quoted SQL identifier (SNDS names are upper case and must stay so)."""
    if '"' in name:
        raise ValueError(f"invalid identifier {name!r}")
    return f'"{name}"'


def _raise(message: str):
    raise jinja2.TemplateError(message)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(SQL_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["sql_string"] = sql_string
    env.filters["ident"] = ident
    env.filters["sql_list"] = sql_list
    env.filters["prefix"] = lambda name, prefix: prefix + name
    env.globals["raise"] = _raise
    return env


_ENV: jinja2.Environment | None = None


def _env() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV


def render(template: str, **params) -> str:
    """Render sql/<template> with `params` into one SQL statement (authoring dialect)."""
    return _env().get_template(template).render(**params).strip().rstrip(";")


def render_text(text: str, **params) -> str:
    """Render SQL given as text, which may import the macros of sql/ (tests of a single macro)."""
    return _env().from_string(text).render(**params).strip().rstrip(";")
