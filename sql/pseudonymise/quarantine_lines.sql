{#-
  Quarantine of one delivered file, pseudonymised: the raw text of each rejected line with every field
  that is a known raw identifier of the release replaced by its pseudonym (whatever its position, so
  that a line with a missing or extra field does not leak the identifier it holds), the other fields
  as delivered.
  Inputs: parsed(_reason, _line, _lineno, ...) from ingest/parse_delivery_file.sql; id_map(raw_id, pseudonym).
  Output: source_file, reason, raw_line, and _lineno (the writer orders by it and leaves it out).
-#}
WITH rejected AS (
    SELECT _lineno, _reason, _line
    FROM parsed
    WHERE _reason IS NOT NULL
),
fields AS (
    SELECT rejected._lineno, rejected._reason, field.value, field.position
    FROM rejected, UNNEST(string_split(rejected._line, {{ separator | sql_string }})) WITH ORDINALITY AS field(value, position)
)
SELECT
    {{ source_file | sql_string }} AS source_file,
    fields._reason AS reason,
    string_agg(coalesce(id_map.pseudonym, fields.value), {{ separator | sql_string }} ORDER BY fields.position) AS raw_line,
    fields._lineno
FROM fields
LEFT JOIN id_map ON id_map.raw_id = fields.value
GROUP BY fields._lineno, fields._reason
