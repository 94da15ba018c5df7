{#- dcir_for_information (RULES.md, DCIR cleaning): lines sent "for information" (DPN_QLF = 71,
    IR_DEP_V "POUR INFORMATION (SOINS EXTERNES)"): the care is already counted in PMSI. A NULL
    DPN_QLF is kept. Reads ER_PRS_F. -#}
DPN_QLF IN ({{ rule.DPN_QLF | sql_list }})
