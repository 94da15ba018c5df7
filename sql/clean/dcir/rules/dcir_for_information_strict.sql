{#- dcir_for_information_strict (RULES.md; SCALPEL3's stricter variant): also drop lines whose
    PRS_DPN_QLP is 71. A NULL PRS_DPN_QLP is kept. Reads ER_PRS_F. -#}
PRS_DPN_QLP IN ({{ rule.PRS_DPN_QLP | sql_list }})
