{#- Row accounting over `accounting_items(step, item, rows_in, rows_out, set_aside, rows_found,
    rows_upstream)` (built from the step reports and the Parquet footers): an item reconciles when
    rows_in = rows_out + set_aside (quarantined + removed by named rules), rows_out = the rows found in
    the Parquet written, and rows_in = the rows the upstream step wrote (when known). -#}
WITH items AS (
    SELECT step, item, CAST(rows_in AS BIGINT) AS rows_in, CAST(rows_out AS BIGINT) AS rows_out,
           CAST(set_aside AS BIGINT) AS set_aside, CAST(rows_found AS BIGINT) AS rows_found,
           CAST(rows_upstream AS BIGINT) AS rows_upstream
    FROM accounting_items
),
judged AS (
    SELECT step, item,
           CASE WHEN rows_in <> rows_out + set_aside
                  OR rows_out <> coalesce(rows_found, rows_out)
                  OR rows_in <> coalesce(rows_upstream, rows_in) THEN 1 ELSE 0 END AS bad
    FROM items
)
SELECT coalesce(sum(bad), 0) AS observed, count(*) AS total,
       min(CASE WHEN bad = 1 THEN step || ' ' || item END) AS example
FROM judged
