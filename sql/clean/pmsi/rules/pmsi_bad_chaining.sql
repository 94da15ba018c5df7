{#- pmsi_bad_chaining (RULES.md, PMSI cleaning): a stay is linked to its patient only when every
    chaining-quality code of its C row (NIR_RET, NAI_RET, SEX_RET, SEJ_RET, FHO_RET, PMS_RET, DAT_RET)
    is '0'; a missing value is not '0'. (One HDH page prints `<> '0'`: a typo.) Codes are text or
    booleans depending on the table: '0' and false are the same code. A code that a year's table does
    not carry (`rule.absent`: {code: [years]}, from the delivered columns) is not required that year;
    one absent from every delivered year is left out (spark_jobs/clean.py: pmsi_rule_inputs). -#}
NOT ({% for c in rule.codes %}{{ "AND " if not loop.first }}(coalesce(CAST({{ c | ident }} AS VARCHAR) IN ('0', 'false'), false)
    {%- if rule.absent.get(c) %} OR year IN ({{ rule.absent[c] | join(", ") }}){% endif %}) {% endfor %})
