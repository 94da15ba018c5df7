{#- dcir_ete_ind_taa_1 (RULES.md): care of public hospitals billed directly to the Assurance maladie
    (ETE_IND_TAA = 1) is counted in PMSI. Reads ER_ETE_F: the line goes when one of its ER_ETE_F rows
    (9-key join) matches; a NULL ETE_IND_TAA is kept. -#}
ETE_IND_TAA IN ({{ rule.ETE_IND_TAA | sql_list }})
