{#-
  Pseudonymisation, pass 2: hash the identifiers of the release that the vault does not know yet.
  Inputs: release_ids(raw_id) distinct identifiers of the whole release (pass 1 over every file);
          vault_ids(raw_id, pseudonym) the region's vault.
  snds_pseudonym() is argon2id with the region's pepper, registered by the engine adapter as a
  vectorised, parallel UDF. The result is materialised, so each new identifier is hashed once.
-#}
SELECT r.raw_id, snds_pseudonym(r.raw_id) AS pseudonym
FROM release_ids AS r
LEFT JOIN vault_ids AS v ON v.raw_id = r.raw_id
WHERE v.raw_id IS NULL
