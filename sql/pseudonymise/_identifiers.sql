{#- Pseudonymisation macros. An identifier is hashed only when it is pseudonymisable: not null, not
    blank and not one of the placeholders, padding ignored (PMSI writes xxxxxxxxxxxxxxxxx / XXXXXXXXXXXXXXXXD for stays
    that could not be linked to a patient). -#}
{% macro pseudonymisable(expr, placeholders) -%}
({{ expr }} IS NOT NULL AND trim({{ expr }}) <> ''
    {%- if placeholders %} AND trim({{ expr }}) NOT IN ({% for p in placeholders %}{{ p | sql_string }}{{ ", " if not loop.last }}{% endfor %}){% endif %})
{%- endmacro %}
