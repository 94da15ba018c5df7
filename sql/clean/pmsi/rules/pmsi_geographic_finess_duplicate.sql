{#- pmsi_geographic_finess_duplicate (RULES.md): until `until_year` inclusive, AP-HP, AP-HM and HCL sent
    each stay twice, under the legal entity's FINESS and under the site's (geographic) FINESS; the
    copies under a geographic FINESS of the configured list are dropped. The establishment column is
    the first stay-key column (ETA_NUM; ETA_NUM_EPMSI for HAD and RIP). A source may keep the sites whose
    FINESS starts with one of `kept_finess_prefixes` (ACE: HCL's outpatient acts were not duplicated). -#}
year <= {{ rule.until_year }} AND {{ source.stay_key[0] | ident }} IN ({{ rule.finess | sql_list }})
{%- for p in rule.get("kept_finess_prefixes", []) %} AND substr({{ source.stay_key[0] | ident }}, 1, {{ p | length }}) <> {{ p | sql_string }}{% endfor %}
