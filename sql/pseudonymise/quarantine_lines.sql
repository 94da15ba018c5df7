{#-
  Quarantine of one delivered file, pseudonymised: the raw text of each rejected line with every field
  that is a known raw identifier of the release replaced by its pseudonym, the other fields as
  delivered. In a line with a missing or extra field nobody knows which field is the identifier, so
  every other field is reduced to its shape (digits -> 9, letters -> A: `31/02/2020` -> `99/99/9999`),
  which still shows what went wrong without any value.
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
    string_agg(
        CASE
            WHEN id_map.pseudonym IS NOT NULL THEN id_map.pseudonym
            WHEN fields._reason = 'wrong_column_count'
                THEN regexp_replace(regexp_replace(fields.value, '[0-9]', '9', 'g'), '[A-Za-z]', 'A', 'g')
            ELSE fields.value
        END,
        {{ separator | sql_string }} ORDER BY fields.position) AS raw_line,
    fields._lineno
FROM fields
LEFT JOIN id_map ON id_map.raw_id = fields.value
GROUP BY fields._lineno, fields._reason
