{#- dcir_bse_prs_nat_0 (RULES.md): prestation nature BSE_PRS_NAT = 0, "sans objet". Reads ER_PRS_F. -#}
BSE_PRS_NAT IN ({{ rule.BSE_PRS_NAT | sql_list }})
