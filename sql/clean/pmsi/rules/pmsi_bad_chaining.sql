{#- pmsi_bad_chaining (RULES.md, PMSI cleaning): a stay is linked to its patient only when every
    chaining-quality code of its C row (NIR_RET, NAI_RET, SEX_RET, SEJ_RET, FHO_RET, PMS_RET, DAT_RET)
    is '0'; a missing code is not '0'. (One HDH page prints `<> '0'`: a typo.) Codes are text or
    booleans depending on the table: '0' and false are the same code. -#}
NOT ({% for c in rule.codes %}{{ "AND " if not loop.first }}coalesce(CAST({{ c | ident }} AS VARCHAR) IN ('0', 'false'), false) {% endfor %})
