{#-
  Ingest: one delivered CSV file -> typed rows + the quarantine reason of each line.
  Input view `raw_lines(line)`: the file's data lines (header excluded), as read by the engine adapter.
  Output: the delivered columns, typed from the table's SNDS schema (in schema order), then
    _reason  NULL for a valid line; otherwise 'wrong_column_count', or 'bad_<kind>:<COLUMN>' for the
             first field (in delivery order) whose text does not parse as its schema type;
    _line    the raw line, kept for the quarantine.
  Empty fields are NULL. Blank lines are not rows.
-#}
{%- from "ingest/_parse.sql" import parse_value -%}
WITH split_lines AS (
    SELECT rtrim(line, chr(13)) AS _line, string_split(rtrim(line, chr(13)), {{ separator | sql_string }}) AS _f
    FROM raw_lines
    WHERE line IS NOT NULL AND rtrim(line, chr(13)) <> ''
),
fields AS (
    SELECT _line, array_length(_f) AS _n
    {%- for col in columns %},
        {% if col.kind == "string" -%}
        NULLIF(_f[{{ col.position }}], '') AS {{ col.text_alias }}
        {%- else -%}
        NULLIF(trim(_f[{{ col.position }}]), '') AS {{ col.text_alias }}
        {%- endif -%}
    {%- endfor %}
    FROM split_lines
),
typed AS (
    SELECT _line, _n
    {%- for col in columns %},
        {{ col.text_alias }},
        {{ parse_value(col.text_alias, col) }} AS {{ col.name | ident }}
    {%- endfor %}
    FROM fields
)
SELECT
    {%- for col in columns_in_schema_order %}
    CASE WHEN _n = {{ columns | length }} THEN {{ col.name | ident }} END AS {{ col.name | ident }},
    {%- endfor %}
    CASE
        WHEN _n <> {{ columns | length }} THEN 'wrong_column_count'
        {%- for col in columns if col.kind != "string" %}
        WHEN {{ col.text_alias }} IS NOT NULL AND {{ col.name | ident }} IS NULL THEN 'bad_{{ col.kind }}:{{ col.name }}'
        {%- endfor %}
    END AS _reason,
    _line
FROM typed
