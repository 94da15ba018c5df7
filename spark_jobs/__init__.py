"""Step entry points and the engine-neutral step runner (DuckDB or Spark)."""
