{#-
  Ingest: one delivered CSV file -> typed, pseudonymised rows + the fate of each line.
  Inputs: view `raw_lines(line, _lineno)`: the file's data lines (header excluded), as read by the
          engine adapter; `id_map(raw_id, pseudonym)` (sql/pseudonymise/) when the file has
          identifier columns.
  Output: the delivered columns, typed from the table's SNDS schema (in schema order), identifier
          columns holding pseudonyms (never the raw value; NULL when not pseudonymisable), then
    _reason      NULL for a valid line; otherwise why it goes to the quarantine: 'wrong_column_count',
                 'bad_<kind>:<COLUMN>' for the first rule column (col.strict: a key or a field a rule
                 needs, config/ingest.yaml rule_columns) whose text does not parse as its type, or
                 'missing_patient_id:<COLUMN>' when the patient column is empty or a placeholder;
    _nulled      the other columns whose text did not parse (their value is NULL, the row is kept), as
                 'COLUMN|bad_<kind>|<shape>' entries joined by ';' (shape: digits 9, letters A), else NULL;
    _dropped_by  the named rule that drops a valid line (a PMSI stay not linked to a patient:
                 `unlinked_rule`), else NULL;
    _line        the raw line (for the quarantine, which pseudonymises it), and _lineno (file order).
  Empty fields are NULL. Blank lines are not rows.
-#}
{%- from "ingest/_parse.sql" import parse_value, value_shape -%}
{%- from "pseudonymise/_identifiers.sql" import pseudonymisable -%}
WITH split_lines AS (
    SELECT _lineno, rtrim(line, chr(13)) AS _line, string_split(rtrim(line, chr(13)), {{ separator | sql_string }}) AS _f
    FROM raw_lines
    WHERE line IS NOT NULL AND rtrim(line, chr(13)) <> ''
),
fields AS (
    SELECT _lineno, _line, array_length(_f) AS _n
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
    SELECT _lineno, _line, _n
    {%- for col in columns %},
        {{ col.text_alias }},
        {{ parse_value(col.text_alias, col) }} AS {{ col.name | ident }}
    {%- endfor %}
    FROM fields
),
pseudonymised AS (
    SELECT typed.*
    {%- for col in identifier_columns %},
        {{ "m%d" % loop.index }}.pseudonym AS {{ ("_p_" ~ col.name) | ident }}
    {%- endfor %}
    FROM typed
    {%- for col in identifier_columns %}
    LEFT JOIN id_map AS {{ "m%d" % loop.index }} ON {{ "m%d" % loop.index }}.raw_id = typed.{{ col.name | ident }}
    {%- endfor %}
)
SELECT
    {%- for col in columns_in_schema_order %}
    {%- set value = ("_p_" ~ col.name) if col.identifier else col.name %}
    CASE WHEN _n = {{ columns | length }} THEN {{ value | ident }} END AS {{ col.name | ident }},
    {%- endfor %}
    CASE
        WHEN _n <> {{ columns | length }} THEN 'wrong_column_count'
        {%- for col in columns if col.kind not in ("string", "code") and col.strict %}
        WHEN {{ col.text_alias }} IS NOT NULL AND {{ col.name | ident }} IS NULL THEN 'bad_{{ col.kind }}:{{ col.name }}'
        {%- endfor %}
        {%- if patient_column and not unlinked_rule %}
        WHEN NOT {{ pseudonymisable(patient_column.name | ident, placeholders) }} THEN 'missing_patient_id:{{ patient_column.name }}'
        {%- endif %}
    END AS _reason,
    {%- if patient_column and unlinked_rule %}
    CASE WHEN NOT {{ pseudonymisable(patient_column.name | ident, placeholders) }} THEN {{ unlinked_rule | sql_string }} END AS _dropped_by,
    {%- else %}
    CAST(NULL AS VARCHAR) AS _dropped_by,
    {%- endif %}
    {%- set lenient = columns | selectattr("strict", "false") | rejectattr("kind", "in", ["string", "code"]) | list %}
    {%- if lenient %}
    CASE WHEN _n = {{ columns | length }} THEN NULLIF(concat_ws(';'
        {%- for col in lenient %},
        CASE WHEN {{ col.text_alias }} IS NOT NULL AND {{ col.name | ident }} IS NULL
             THEN '{{ col.name }}|bad_{{ col.kind }}|' || {{ value_shape(col.text_alias) }} END
        {%- endfor %}), '') END AS _nulled,
    {%- else %}
    CAST(NULL AS VARCHAR) AS _nulled,
    {%- endif %}
    _line,
    _lineno
FROM pseudonymised
