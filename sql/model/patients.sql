{#- patients (RULES.md, Patients): every IR_BEN_R beneficiary (one row per BEN_NIR_PSA: the first
    rank of birth) and every patient of an event table; sex and birth from IR_BEN_R, else from the
    patient's DCIR claims; death reconciled over deaths_by_source (Victoria: the latest date, flagged
    incoherent when the earliest and latest are `incoherent_death_days` or more apart); last contact =
    latest DCIR care date or stay end. -#}
WITH ben AS (
    SELECT * FROM (
        SELECT BEN_NIR_PSA AS patient_id, BEN_SEX_COD, BEN_NAI_ANN, BEN_NAI_MOI,
            row_number() OVER (PARTITION BY BEN_NIR_PSA ORDER BY BEN_RNG_GEM, BEN_DTE_MAJ DESC, BEN_IDT_ANO) AS _n
        FROM IR_BEN_R WHERE BEN_NIR_PSA IS NOT NULL) AS ranked
    WHERE _n = 1
),
dcir_patients AS (
    SELECT patient_id, max(CASE WHEN BEN_SEX_COD IN (1, 2) THEN BEN_SEX_COD END) AS BEN_SEX_COD,
        max(BEN_NAI_ANN) AS BEN_NAI_ANN, max(event_date) AS last_care
    FROM dcir WHERE item = 'prestation' GROUP BY patient_id
),
stay_ends AS (
    SELECT patient_id, max(end_date) AS last_stay_end FROM stays GROUP BY patient_id
),
deaths AS (
    SELECT patient_id, max(death_date) AS latest, min(death_date) AS earliest FROM deaths_by_source GROUP BY patient_id
),
everyone AS (
    SELECT patient_id FROM ben
    UNION SELECT patient_id FROM dcir_patients
    UNION SELECT patient_id FROM stay_ends
    UNION SELECT patient_id FROM deaths
    UNION SELECT patient_id FROM diagnoses
)
SELECT e.patient_id,
    -- A missing value (NULL, sex 9 "unknown", birth year 1600) in IR_BEN_R gives way to DCIR's.
    coalesce(CASE WHEN b.BEN_SEX_COD IN (1, 2) THEN b.BEN_SEX_COD END,
             CASE WHEN d.BEN_SEX_COD IN (1, 2) THEN d.BEN_SEX_COD END, b.BEN_SEX_COD, d.BEN_SEX_COD) AS sex,
    coalesce(CASE WHEN b.BEN_NAI_ANN >= {{ missing_before_year }} THEN b.BEN_NAI_ANN END,
             CASE WHEN d.BEN_NAI_ANN >= {{ missing_before_year }} THEN d.BEN_NAI_ANN END) AS birth_year,
    b.BEN_NAI_MOI AS birth_month,
    x.latest AS death_date,
    CASE WHEN datediff('day', x.earliest, x.latest) >= {{ incoherent_death_days }} THEN 1 ELSE 0 END AS incoherent_death,
    greatest(d.last_care, s.last_stay_end) AS last_contact_date  -- NULLs skipped on both engines
FROM everyone AS e
LEFT JOIN ben AS b ON b.patient_id = e.patient_id
LEFT JOIN dcir_patients AS d ON d.patient_id = e.patient_id
LEFT JOIN stay_ends AS s ON s.patient_id = e.patient_id
LEFT JOIN deaths AS x ON x.patient_id = e.patient_id
