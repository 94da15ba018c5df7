{#- View claims_in_stays, built once before the cost tables that read it (costs_hospital_stays,
    costs_outpatient): the PMSI-DCIR matching of _costs.sql. -#}
{%- from "model/_costs.sql" import claims_in_stays -%}
{{ claims_in_stays(costs.stay_matching_sources) }}
