{#-
  Stay dates (RULES.md, PMSI cleaning), per source. A date of year 1600 (or before
  `missing_before_year`) means missing.
  MCO: EXE_SOI_DTD/EXE_SOI_DTF of T_MCOaaC (from 2009), else ENT_DAT/SOR_DAT, else estimated: the
       first day of the discharge month (SOR_ANN/SOR_MOI), minus SEJ_NBJ nights for the start.
  SSR: ENT_DAT/SOR_DAT, else the first day of ANN_LUN_1S/MOI_LUN_1S (start) and of SOR_ANN/SOR_MOI (end).
  HAD: EXE_SOI_DTD/EXE_SOI_DTF, else ENT_DAT/SOR_DAT.
-#}
{%- macro known(d, missing_before_year) -%}
CASE WHEN year({{ d }}) >= {{ missing_before_year }} THEN {{ d }} END
{%- endmacro -%}

{%- macro stay_start(source, y) -%}
{%- if source == "MCO" -%}
coalesce({{ known("EXE_SOI_DTD", y) }}, {{ known("ENT_DAT", y) }}, make_date(SOR_ANN, SOR_MOI, 1) - CAST(coalesce(SEJ_NBJ, 0) AS INTEGER))
{%- elif source == "SSR" -%}
coalesce({{ known("ENT_DAT", y) }}, make_date(ANN_LUN_1S, MOI_LUN_1S, 1))
{%- else -%}
coalesce({{ known("EXE_SOI_DTD", y) }}, {{ known("ENT_DAT", y) }})
{%- endif -%}
{%- endmacro -%}

{%- macro stay_end(source, y) -%}
{%- if source == "MCO" -%}
coalesce({{ known("EXE_SOI_DTF", y) }}, {{ known("SOR_DAT", y) }}, make_date(SOR_ANN, SOR_MOI, 1))
{%- elif source == "SSR" -%}
coalesce({{ known("SOR_DAT", y) }}, make_date(SOR_ANN, SOR_MOI, 1))
{%- else -%}
coalesce({{ known("EXE_SOI_DTF", y) }}, {{ known("SOR_DAT", y) }})
{%- endif -%}
{%- endmacro -%}
