{#-
  Pseudonymisation: the raw -> pseudonym map of this release, from the vault for known identifiers
  and from this run's hashing for new ones. Joined back into every table by the parse step.
-#}
SELECT v.raw_id, v.pseudonym
FROM vault_ids AS v
JOIN release_ids AS r ON r.raw_id = v.raw_id
UNION ALL
SELECT raw_id, pseudonym
FROM new_pseudonyms
