{#- Volume drift over `drift_items(table_name, row_count, previous_rows)`: observed = tables whose row
    count moved by more than `tolerance` (a share of the previous release's count). -#}
WITH items AS (
    SELECT table_name, CAST(row_count AS BIGINT) AS row_count, CAST(previous_rows AS BIGINT) AS previous_rows
    FROM drift_items
),
judged AS (
    SELECT table_name,
           CASE WHEN abs(row_count - previous_rows) > {{ tolerance }} * previous_rows THEN 1 ELSE 0 END AS bad
    FROM items
)
SELECT coalesce(sum(bad), 0) AS observed, count(*) AS total, min(CASE WHEN bad = 1 THEN table_name END) AS example
FROM judged
