{#- procedures: CCAM acts of the DCIR claims and of the PMSI stays (already dated by the merge). -#}
SELECT patient_id, code, event_date AS date, 'DCIR' AS source
FROM dcir
WHERE item = 'procedure'
UNION ALL
SELECT patient_id, code, date, source
FROM pmsi
WHERE item = 'procedure'
