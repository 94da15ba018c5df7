{#- had_error_ghpc (RULES.md, PMSI errors): stays grouped in an error group: the group code (`column`) starts
    with one of `prefixes` (CMD 90 for MCO GHM and SSR GME, 99 for HAD GHPC). -#}
{% for p in rule.prefixes %}{{ "OR " if not loop.first }}substr({{ rule.column | ident }}, 1, {{ p | length }}) = {{ p | sql_string }} {% endfor %}
