{#-
  Pseudonymisation, pass 2b: hash the new identifiers (new_ids, from new_identifiers.sql).
  snds_pseudonym() is argon2id with the region's pepper, registered by the engine adapter as a
  vectorised, parallel UDF. The result is materialised, so each new identifier is hashed once.
-#}
SELECT raw_id, snds_pseudonym(raw_id) AS pseudonym
FROM new_ids
