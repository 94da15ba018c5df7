{#- mco_ghs_9999 (RULES.md, SCALPEL3 choice): MCO stays with GHS 9999 are not reimbursed by the
    Assurance maladie. -#}
{{ rule.column | ident }} IN ({{ rule["values"] | sql_list }})
