{#- stays: the "stay" items of the PMSI merge (one per kept stay). -#}
SELECT patient_id, source, eta_num, stay_id, date AS start_date, end_date, ENT_MOD, SOR_MOD, ghm
FROM pmsi
WHERE item = 'stay'
