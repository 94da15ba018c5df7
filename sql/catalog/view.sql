{#- A published table: the current version of one release (`main`: of the latest release). -#}
CREATE OR REPLACE VIEW {{ schema | ident }}.{{ table | ident }} AS
{{ select }}
