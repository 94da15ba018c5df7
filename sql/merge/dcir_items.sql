{#-
  Merge DCIR: one row per item of the cleaned DCIR (clean zone): each ER_PRS_F line is a
  "prestation" item (code = PRS_NAT_REF), each detail row an item of its table's kind, with the
  differing native code columns unified into `code` (`code_column` keeps the native name). Every item
  carries its line's patient, date and qualifiers; amounts are on prestation items only.
  event_date = EXE_SOI_DTD, or FLX_DIS_DTD when the care date is missing (RULES.md, flux lag).
  Inputs: ER_PRS_F and the detail tables of `items` (clean zone). Output: dcir_items.
-#}
{%- from "merge/_codes.sql" import code -%}
{%- macro line_columns(l) -%}
{{ l }}.BEN_NIR_PSA AS patient_id, {{ l }}.BEN_RNG_GEM, {{ l }}._event_date AS event_date, {{ l }}.EXE_SOI_DTF AS event_end_date,
    CAST(year({{ l }}._event_date) AS INTEGER) AS year, {{ l }}.FLX_DIS_DTD, {{ l }}.PRS_NAT_REF, {{ l }}.PSE_SPE_COD,
    {{ l }}.PFS_EXE_NUM, {{ l }}.ETB_PRE_FIN, {{ l }}.CPL_MAJ_TOP, {{ l }}.CPL_AFF_COD, {{ l }}.BEN_CMU_TOP, {{ l }}.BEN_SEX_COD,
    {{ l }}.BEN_NAI_ANN, {{ l }}.BEN_DCD_DTE, {{ l }}.BEN_DCD_AME
{%- endmacro -%}
WITH lines AS (
    SELECT *, coalesce(EXE_SOI_DTD, FLX_DIS_DTD) AS _event_date FROM ER_PRS_F
)
SELECT {{ line_columns("l") }},
    'prestation' AS item, 'ER_PRS_F' AS source_table, 'PRS_NAT_REF' AS code_column, {{ code("l.PRS_NAT_REF") }} AS code,
    CAST(l.PRS_ACT_QTE AS DOUBLE) AS quantity,
    CAST(l.PRS_PAI_MNT AS DECIMAL(18,2)) AS PRS_PAI_MNT, CAST(l.BSE_REM_BSE AS DECIMAL(18,2)) AS BSE_REM_BSE,
    CAST(l.BSE_REM_MNT AS DECIMAL(18,2)) AS BSE_REM_MNT, CAST(l.CPL_REM_MNT AS DECIMAL(18,2)) AS CPL_REM_MNT
FROM lines AS l
{%- for table, spec in items.items() %}
UNION ALL
SELECT {{ line_columns("l") }},
    '{{ spec.item }}', '{{ table }}', '{{ spec.code }}', {{ code("d." ~ spec.code) }},
    {% if spec.get("quantity") %}CAST(d.{{ spec.quantity | ident }} AS DOUBLE){% else %}CAST(1 AS DOUBLE){% endif %},
    CAST(NULL AS DECIMAL(18,2)), CAST(NULL AS DECIMAL(18,2)), CAST(NULL AS DECIMAL(18,2)), CAST(NULL AS DECIMAL(18,2))
FROM {{ table }} AS d
JOIN lines AS l ON {% for k in join_keys %}{{ "AND " if not loop.first }}l.{{ k | ident }} = d.{{ k | ident }} {% endfor %}
{%- endfor %}
