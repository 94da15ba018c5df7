{#-
  Parsing macros for the ingest step: one macro per SNDS value kind. Each returns the typed value, or
  NULL when the text does not parse; parse_delivery_file.sql turns "text present but NULL value" into a
  quarantine reason, so nothing is silently lost.

  Dates are parsed here in portable SQL (fixed-layout check, then day/month/year taken by position
  and range-checked) rather than with each engine's own date parser: DuckDB's strptime and Spark's
  to_date disagree on one-digit days, two-digit years and lenient month names, and the engines must
  accept and refuse exactly the same values.
-#}

{%- macro as_int(expr) -%} TRY_CAST({{ expr }} AS INTEGER) {%- endmacro -%}

{%- macro valid_date(y, m, d) -%}
CASE WHEN {{ y }} >= 1 AND {{ m }} BETWEEN 1 AND 12 AND {{ d }} BETWEEN 1 AND (CASE
        WHEN {{ m }} IN (1, 3, 5, 7, 8, 10, 12) THEN 31
        WHEN {{ m }} IN (4, 6, 9, 11) THEN 30
        WHEN ({{ y }} % 4 = 0 AND {{ y }} % 100 <> 0) OR {{ y }} % 400 = 0 THEN 29
        ELSE 28 END)
     THEN make_date({{ y }}, {{ m }}, {{ d }}) END
{%- endmacro -%}

{%- macro month_number(abbr) -%}
CASE upper({{ abbr }}) WHEN 'JAN' THEN 1 WHEN 'FEB' THEN 2 WHEN 'MAR' THEN 3 WHEN 'APR' THEN 4
    WHEN 'MAY' THEN 5 WHEN 'JUN' THEN 6 WHEN 'JUL' THEN 7 WHEN 'AUG' THEN 8 WHEN 'SEP' THEN 9
    WHEN 'OCT' THEN 10 WHEN 'NOV' THEN 11 WHEN 'DEC' THEN 12 END
{%- endmacro -%}

{#- One supported date layout. `v` is the trimmed text. -#}
{%- macro parse_date_format(v, fmt) -%}
{%- if fmt == "dd/MM/yyyy" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{2}/[0-9]{2}/[0-9]{4}$') THEN
    {{ valid_date(as_int("substr(" ~ v ~ ", 7, 4)"), as_int("substr(" ~ v ~ ", 4, 2)"), as_int("substr(" ~ v ~ ", 1, 2)")) }} END
{%- elif fmt == "yyyy-MM-dd" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{4}-[0-9]{2}-[0-9]{2}$') THEN
    {{ valid_date(as_int("substr(" ~ v ~ ", 1, 4)"), as_int("substr(" ~ v ~ ", 6, 2)"), as_int("substr(" ~ v ~ ", 9, 2)")) }} END
{%- elif fmt == "ddMMyyyy" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{8}$') THEN
    {{ valid_date(as_int("substr(" ~ v ~ ", 5, 4)"), as_int("substr(" ~ v ~ ", 3, 2)"), as_int("substr(" ~ v ~ ", 1, 2)")) }} END
{%- elif fmt == "yyyyMMdd" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{8}$') THEN
    {{ valid_date(as_int("substr(" ~ v ~ ", 1, 4)"), as_int("substr(" ~ v ~ ", 5, 2)"), as_int("substr(" ~ v ~ ", 7, 2)")) }} END
{%- elif fmt == "ddMMMyyyy:HH:mm:ss" -%}
{#- SAS DATETIME (PMSI EXE_SOI_DTD). The time of day is always midnight in PMSI: the value is a date. -#}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{2}[A-Za-z]{3}[0-9]{4}:([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$') THEN
    {{ valid_date(as_int("substr(" ~ v ~ ", 6, 4)"), month_number("substr(" ~ v ~ ", 3, 3)"), as_int("substr(" ~ v ~ ", 1, 2)")) }} END
{%- elif fmt == "ddMMMyyyy" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{2}[A-Za-z]{3}[0-9]{4}$') THEN
    {{ valid_date(as_int("substr(" ~ v ~ ", 6, 4)"), month_number("substr(" ~ v ~ ", 3, 3)"), as_int("substr(" ~ v ~ ", 1, 2)")) }} END
{%- else -%}
{{ raise("unsupported date format " ~ fmt) }}
{%- endif -%}
{%- endmacro -%}

{#- The typed value of one column. -#}
{%- macro parse_value(v, col) -%}
{%- if col.kind == "string" -%}
{{ v }}
{%- elif col.kind == "integer" -%}
CASE WHEN regexp_matches({{ v }}, '^[+-]?[0-9]{1,18}$') THEN TRY_CAST({{ v }} AS BIGINT) END
{%- elif col.kind == "number" -%}
CASE WHEN regexp_matches({{ v }}, '^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]{1,3})?$') THEN TRY_CAST({{ v }} AS DOUBLE) END
{%- elif col.kind == "boolean" -%}
CASE WHEN lower({{ v }}) IN ('1', 'true') THEN true WHEN lower({{ v }}) IN ('0', 'false') THEN false END
{%- elif col.kind == "year" -%}
{#- SNDS "year" fields hold yyyy, and some (EXE_SOI_AMD) hold yyyyMM: both kept as the integer written. -#}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{4}([0-9]{2})?$') THEN TRY_CAST({{ v }} AS INTEGER) END
{%- elif col.kind == "yearmonth" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{6}$') AND TRY_CAST(substr({{ v }}, 5, 2) AS INTEGER) BETWEEN 1 AND 12 THEN TRY_CAST({{ v }} AS INTEGER) END
{%- elif col.kind == "month" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{1,2}$') AND TRY_CAST({{ v }} AS INTEGER) BETWEEN 1 AND 12 THEN TRY_CAST({{ v }} AS INTEGER) END
{%- elif col.kind == "date" -%}
{%- if col.formats | length == 1 -%}
{{ parse_date_format(v, col.formats[0]) }}
{%- else -%}
COALESCE({% for fmt in col.formats %}{{ parse_date_format(v, fmt) }}{{ ", " if not loop.last }}{% endfor %})
{%- endif -%}
{%- else -%}
{{ raise("unknown value kind " ~ col.kind) }}
{%- endif -%}
{%- endmacro -%}
