{#- devices: LPP items of the cleaned claims (ER_TIP_F), net quantity. -#}
SELECT patient_id, event_date AS date, code, quantity
FROM dcir
WHERE item = 'device'
