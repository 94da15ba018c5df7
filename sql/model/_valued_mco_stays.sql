{#- View valued_mco_stays, built once before the cost tables that read it (costs_hospital_stays,
    costs_hospital_extras): the valued public MCO stays of _costs.sql. -#}
{%- from "model/_costs.sql" import valued_mco_stays -%}
{{ valued_mco_stays(costs.mco, stay_keys.MCO.stay_table, ["year"] + stay_keys.MCO.stay_key) }}
