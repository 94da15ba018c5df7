{#- Patients whose death dates disagree across sources (incoherent_death, config/model.yaml). -#}
SELECT CAST(COALESCE(SUM(CASE WHEN incoherent_death = 1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS incoherent_death
FROM patients
