{#- Code normalisation shared by the merge units. -#}
{#- ICD-10 (RULES.md): codes may be delivered with a dot (C66.9) or padding; the model keeps C669. -#}
{%- macro icd10(v) -%}
NULLIF(upper(replace(trim({{ v }}), '.', '')), '')
{%- endmacro -%}
{#- Other codes (CCAM, CIP13, NGAP natures, LPP, UCD): text, trimmed. -#}
{%- macro code(v) -%}
NULLIF(trim(CAST({{ v }} AS VARCHAR)), '')
{%- endmacro -%}
