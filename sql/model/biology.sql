{#- biology: NABM acts of the cleaned claims (ER_BIO_F), net quantity. -#}
SELECT patient_id, event_date AS date, code, quantity
FROM dcir
WHERE item = 'biology'
