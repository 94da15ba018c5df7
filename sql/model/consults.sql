{#- consults (RULES.md, Consultations): cleaned claims of a consultation nature, without majoration
    lines (CPL_MAJ_TOP < 2) and participation-forfaitaire lines (CPL_AFF_COD 16), net quantity > 0. -#}
SELECT patient_id, event_date AS date, PRS_NAT_REF, PSE_SPE_COD
FROM dcir
WHERE item = 'prestation'
  AND PRS_NAT_REF IN ({{ consult_natures | sql_list }})
  AND coalesce(CPL_MAJ_TOP, 0) <= {{ consult_max_cpl_maj_top }}
  AND coalesce(CPL_AFF_COD, 0) NOT IN ({{ consult_excluded_cpl_aff_cod | sql_list }})
  AND quantity > 0
