{#-
  The generator's truth for one event table (synthetic deliveries only: `_truth/events/<table>.csv`,
  comma-separated text with a header line, no quoting), its raw `patient_id` replaced by the pseudonym
  the release gives that identifier, so that the model gate can compare the model with the truth
  without any raw identifier leaving ingest. Every column stays text, as the truth writes it ('' for
  NULL); a patient the release does not know gets a NULL patient_id (the comparison then fails).
  Inputs: truth_lines(line, _lineno); id_map(raw_id, pseudonym). Output: `columns`, then _lineno.
-#}
WITH split_lines AS (
    SELECT _lineno, string_split(rtrim(line, chr(13)), ',') AS _f
    FROM truth_lines
    WHERE line IS NOT NULL AND rtrim(line, chr(13)) <> ''
)
SELECT
    {%- for col in columns %}
    {% if col == "patient_id" %}id_map.pseudonym{% else %}split_lines._f[{{ loop.index }}]{% endif %} AS {{ col | ident }},
    {%- endfor %}
    split_lines._lineno
FROM split_lines
LEFT JOIN id_map ON id_map.raw_id = split_lines._f[{{ columns.index("patient_id") + 1 }}]
