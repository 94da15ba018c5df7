{#-
  Pseudonymisation, pass 1: the distinct raw identifiers of the whole release.
  Inputs: one view of raw lines per delivered file with identifier columns (`sources`: the view and
  the 1-based positions of its identifier fields). Every line counts, valid or not, so that the
  identifiers of quarantined lines are pseudonymised too. Only the identifier fields are cut out of
  each line (split_part), which is much cheaper than parsing the whole file.
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
    {%- endfor %}
    {%- endfor %}
) AS identifier_fields
