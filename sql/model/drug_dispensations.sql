{#- drug_dispensations (RULES.md, Drug dispensations): CIP13 items of the cleaned claims, ATC from the
    drug referential IR_PHA_R, dispensed DDDs from the ATC/DDD reference (configuration, not
    redistributable: REF_ATC_DDD) when its unit is the unit of the strength. One route per ATC code and unit:
    the first in alphabetical order (O before P). -#}
WITH ddd_ref AS (
    SELECT ATC_COD, DDD_UNI, DDD_VAL FROM (
        SELECT *, row_number() OVER (PARTITION BY ATC_COD, DDD_UNI ORDER BY ADM_ROUTE, DDD_VAL) AS _n
        FROM REF_ATC_DDD WHERE DDD_VAL > 0) AS ranked
    WHERE _n = 1
),
pha AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY PHA_CIP_C13 ORDER BY PHA_ATC_C07, PHA_PRS_IDE) AS _n
        FROM IR_PHA_R) AS ranked
    WHERE _n = 1
)
SELECT d.patient_id, d.event_date AS date, d.code AS cip13, r.PHA_ATC_C07 AS atc, d.quantity,
    round(d.quantity * TRY_CAST(r.PHA_UPC_NBR AS DOUBLE) * TRY_CAST(r.PHA_SUB_DOS AS DOUBLE) / x.DDD_VAL, 3) AS ddd
FROM dcir AS d
LEFT JOIN pha AS r ON CAST(r.PHA_CIP_C13 AS VARCHAR) = d.code
LEFT JOIN ddd_ref AS x ON x.ATC_COD = r.PHA_ATC_C07 AND x.DDD_UNI = r.PHA_DOS_UNI
WHERE d.item = 'drug'
