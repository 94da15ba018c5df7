{#-
  Parsing macros for the ingest step: one macro per SNDS value kind. Each returns the typed value, or
  NULL when the text does not parse; parse_delivery_file.sql turns "text present but NULL value" into a
  quarantine reason, so nothing is silently lost.

  Dates are parsed here in portable SQL (a fixed-layout check, then day, month and year taken by
  position into an ISO yyyy-MM-dd text that is cast to DATE) rather than with each engine's own date
  parser: DuckDB's strptime and Spark's to_date disagree on one-digit days, two-digit years and
  lenient month names, and the engines must accept and refuse exactly the same values.
-#}

{#- A date from its year, month and day digits (text), or NULL if no such day exists (31/02, 29/02 of a
    non-leap year, month 13, year 0000). The ISO text is built from fixed positions after a layout check,
    and cast: both engines refuse impossible dates in a cast the same way. -#}
{%- macro iso_date(y, m, d) -%}
CASE WHEN {{ y }} <> '0000' THEN TRY_CAST({{ y }} || '-' || {{ m }} || '-' || {{ d }} AS DATE) END
{%- endmacro -%}

{%- macro month_digits(abbr) -%}
CASE upper({{ abbr }}) WHEN 'JAN' THEN '01' WHEN 'FEB' THEN '02' WHEN 'MAR' THEN '03' WHEN 'APR' THEN '04'
    WHEN 'MAY' THEN '05' WHEN 'JUN' THEN '06' WHEN 'JUL' THEN '07' WHEN 'AUG' THEN '08' WHEN 'SEP' THEN '09'
    WHEN 'OCT' THEN '10' WHEN 'NOV' THEN '11' WHEN 'DEC' THEN '12' END
{%- endmacro -%}

{#- One supported date layout. `v` is the trimmed text. -#}
{%- macro parse_date_format(v, fmt) -%}
{%- if fmt == "dd/MM/yyyy" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{2}/[0-9]{2}/[0-9]{4}$') THEN
    {{ iso_date("substr(" ~ v ~ ", 7, 4)", "substr(" ~ v ~ ", 4, 2)", "substr(" ~ v ~ ", 1, 2)") }} END
{%- elif fmt == "yyyy-MM-dd" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{4}-[0-9]{2}-[0-9]{2}$') THEN
    {{ iso_date("substr(" ~ v ~ ", 1, 4)", "substr(" ~ v ~ ", 6, 2)", "substr(" ~ v ~ ", 9, 2)") }} END
{%- elif fmt == "ddMMyyyy" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{8}$') THEN
    {{ iso_date("substr(" ~ v ~ ", 5, 4)", "substr(" ~ v ~ ", 3, 2)", "substr(" ~ v ~ ", 1, 2)") }} END
{%- elif fmt == "yyyyMMdd" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{8}$') THEN
    {{ iso_date("substr(" ~ v ~ ", 1, 4)", "substr(" ~ v ~ ", 5, 2)", "substr(" ~ v ~ ", 7, 2)") }} END
{%- elif fmt == "ddMMMyyyy:HH:mm:ss" -%}
{#- SAS DATETIME (PMSI EXE_SOI_DTD). The time of day is always midnight in PMSI: the value is a date. -#}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{2}[A-Za-z]{3}[0-9]{4}:([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$') THEN
    {{ iso_date("substr(" ~ v ~ ", 6, 4)", month_digits("substr(" ~ v ~ ", 3, 3)"), "substr(" ~ v ~ ", 1, 2)") }} END
{%- elif fmt == "ddMMMyyyy" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{2}[A-Za-z]{3}[0-9]{4}$') THEN
    {{ iso_date("substr(" ~ v ~ ", 6, 4)", month_digits("substr(" ~ v ~ ", 3, 3)"), "substr(" ~ v ~ ", 1, 2)") }} END
{%- elif fmt == "yyyy-MM-ddTHH:mm:ss" -%}
{#- ISO 8601 date-time (T or space, optional fraction and Z), as some exports write datetimes: its date. -#}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,9})?Z?$') THEN
    {{ iso_date("substr(" ~ v ~ ", 1, 4)", "substr(" ~ v ~ ", 6, 2)", "substr(" ~ v ~ ", 9, 2)") }} END
{%- else -%}
{{ raise("unsupported date format " ~ fmt) }}
{%- endif -%}
{%- endmacro -%}

{#- Digits of a number as written, in the engines' cast syntax: a decimal comma (profile) becomes a point. -#}
{%- macro decimal_text(v, col) -%}
{%- if col.decimal_comma -%}replace({{ v }}, ',', '.'){%- else -%}{{ v }}{%- endif -%}
{%- endmacro -%}

{#- The typed value of one column; NULL when the text does not parse. Integers written as decimals
    with a zero fraction ('61.0', '1,0' under a decimal comma) are the integer; yearmonth accepts
    yyyyMM and MMyyyy ('082019', as some PMSI files write MOI_ANN) and stores yyyyMM. -#}
{%- macro parse_value(v, col) -%}
{%- set frac = "([.,]0*)?" if col.decimal_comma else "([.]0*)?" -%}
{%- if col.kind == "string" -%}
{{ v }}
{%- elif col.kind == "code" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]+[.]0+$') THEN regexp_replace({{ v }}, '[.]0+$', '') ELSE {{ v }} END
{%- elif col.kind == "integer" -%}
CASE WHEN regexp_matches({{ v }}, '^[+-]?[0-9]{1,18}$') THEN TRY_CAST({{ v }} AS BIGINT)
     WHEN regexp_matches({{ v }}, '^[+-]?[0-9]{1,18}{{ frac }}$') THEN TRY_CAST(regexp_replace({{ v }}, '[.,]0*$', '') AS BIGINT) END
{%- elif col.kind == "number" -%}
{%- if col.decimal_comma -%}
CASE WHEN regexp_matches({{ v }}, '^[+-]?([0-9]+([.,][0-9]*)?|[.,][0-9]+)([eE][+-]?[0-9]{1,3})?$') THEN TRY_CAST(replace({{ v }}, ',', '.') AS DOUBLE) END
{%- else -%}
CASE WHEN regexp_matches({{ v }}, '^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]{1,3})?$') THEN TRY_CAST({{ v }} AS DOUBLE) END
{%- endif -%}
{%- elif col.kind == "boolean" -%}
CASE WHEN lower({{ v }}) IN ('1', 'true', '1.0') THEN true WHEN lower({{ v }}) IN ('0', 'false', '0.0') THEN false END
{%- elif col.kind == "year" -%}
{#- SNDS "year" fields hold yyyy, and some (EXE_SOI_AMD) hold yyyyMM: both kept as the integer written. -#}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{4}([0-9]{2})?$') THEN TRY_CAST({{ v }} AS INTEGER)
     WHEN regexp_matches({{ v }}, '^[0-9]{4}([0-9]{2})?{{ frac }}$') THEN TRY_CAST(regexp_replace({{ v }}, '[.,]0*$', '') AS INTEGER) END
{%- elif col.kind == "yearmonth" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{6}$') AND TRY_CAST(substr({{ v }}, 5, 2) AS INTEGER) BETWEEN 1 AND 12 THEN TRY_CAST({{ v }} AS INTEGER)
     WHEN regexp_matches({{ v }}, '^(0[1-9]|1[0-2])(1[6-9]|20)[0-9]{2}$') THEN TRY_CAST(substr({{ v }}, 3, 4) || substr({{ v }}, 1, 2) AS INTEGER) END
{%- elif col.kind == "month" -%}
CASE WHEN regexp_matches({{ v }}, '^[0-9]{1,2}{{ frac }}$') AND TRY_CAST(regexp_replace({{ v }}, '[.,]0*$', '') AS INTEGER) BETWEEN 1 AND 12 THEN TRY_CAST(regexp_replace({{ v }}, '[.,]0*$', '') AS INTEGER) END
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

{#- The shape of a value that did not parse, for the report: digits as 9, letters as A, at most 24
    characters ('D11' -> 'A99', '12,50' -> '99,99'). Never the value itself. -#}
{%- macro value_shape(v) -%}
substr(regexp_replace(regexp_replace({{ v }}, '[0-9]', '9', 'g'), '[A-Za-z]', 'A', 'g'), 1, 24)
{%- endmacro -%}
