{#-
  Pseudonymisation, pass 2a: the identifiers of the release that the vault does not know yet.
  Inputs: release_ids(raw_id) distinct identifier values of the whole release (pass 1 over every file);
          vault_ids(raw_id, pseudonym) the region's vault.
  Blank and placeholder values are never identifiers: they are not hashed, and so stay unmapped.
-#}
{%- from "pseudonymise/_identifiers.sql" import pseudonymisable -%}
SELECT r.raw_id
FROM release_ids AS r
LEFT JOIN vault_ids AS v ON v.raw_id = r.raw_id
WHERE v.raw_id IS NULL AND {{ pseudonymisable("r.raw_id", placeholders) }}
