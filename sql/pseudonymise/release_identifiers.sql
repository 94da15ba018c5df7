{#-
  Pseudonymisation, pass 1: the distinct raw identifiers of the whole release.
  Inputs: one view of raw lines per delivered file with identifier columns (`sources`: the view, the
  1-based positions of its identifier fields, and its field count). Every line with the right number
  of fields counts, valid or not, so that the identifiers of quarantined lines are pseudonymised too;
  in a line with a missing or extra field the positions mean nothing (its fields are masked in the
  quarantine instead). Only the identifier fields are cut out of each line (split_part), which is
  much cheaper than parsing the whole file.
  Output: raw_id, distinct, as delivered: blanks and placeholders are filtered out by the next step,
  on this small table (filtering here would make DuckDB re-split every line for each condition).
-#}
SELECT DISTINCT raw_id
FROM (
    {%- for source in sources %}
    {%- set outer = loop %}
    {%- for position in source.positions %}
    {{ "UNION ALL " if not (outer.first and loop.first) }}SELECT split_part(rtrim(line, chr(13)), {{ separator | sql_string }}, {{ position }}) AS raw_id
    FROM {{ source.view }}
    WHERE length(line) - length(replace(line, {{ separator | sql_string }}, '')) = {{ source.fields - 1 }}
    {%- endfor %}
    {%- endfor %}
) AS identifier_fields
