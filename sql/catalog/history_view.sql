{#- Every published version of a table, of every release, each row tagged with the version it belongs
    to; BY NAME so that versions written with other model columns still line up (missing ones NULL). -#}
CREATE OR REPLACE VIEW history.{{ table | ident }} AS
{% for v in versions -%}
SELECT {{ v.release | sql_string }} AS "release", {{ v.run_id | sql_string }} AS run_id, {{ "true" if v.is_current else "false" }} AS is_current, *
FROM ({{ v.select }}) AS version_{{ loop.index }}
{% if not loop.last %}UNION ALL BY NAME
{% endif %}
{%- endfor %}
