{#- deaths_by_source (RULES.md, Death): every date a source gives for a patient's death. Dates before
    `missing_before_year` (1600-01-01, BEN_DCD_AME 160001) mean "no death". -#}
SELECT BEN_NIR_PSA AS patient_id, 'IR_BEN_R' AS source, BEN_DCD_DTE AS death_date
FROM IR_BEN_R
WHERE year(BEN_DCD_DTE) >= {{ missing_before_year }} AND coalesce(BEN_DCD_AME, 0) <> 160001
UNION
SELECT patient_id, 'DCIR', BEN_DCD_DTE
FROM dcir
WHERE item = 'prestation' AND year(BEN_DCD_DTE) >= {{ missing_before_year }}
UNION
SELECT patient_id, 'PMSI', end_date
FROM stays
WHERE source = 'MCO' AND SOR_MOD = '9' AND end_date IS NOT NULL
UNION
SELECT b.BEN_NIR_PSA, 'KI_CCI_R', k.BEN_DCD_DTE
FROM KI_CCI_R AS k
JOIN (SELECT DISTINCT BEN_IDT_ANO, BEN_NIR_PSA FROM IR_BEN_R WHERE BEN_IDT_ANO IS NOT NULL) AS b
  ON b.BEN_IDT_ANO = k.BEN_IDT_ANO
WHERE year(k.BEN_DCD_DTE) >= {{ missing_before_year }}
