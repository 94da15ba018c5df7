{#- Pseudonymisation macros. An identifier is hashed only when it is pseudonymisable: not null, not
    blank and not one of the placeholders (PMSI writes xxxxxxxxxxxxxxxxx / XXXXXXXXXXXXXXXXD for stays
    that could not be linked to a patient). -#}
{% macro pseudonymisable(expr, placeholders) -%}
({{ expr }} IS NOT NULL AND trim({{ expr }}) <> ''
    {%- if placeholders %} AND {{ expr }} NOT IN ({% for p in placeholders %}{{ p | sql_string }}{{ ", " if not loop.last }}{% endfor %}){% endif %})
{%- endmacro %}
