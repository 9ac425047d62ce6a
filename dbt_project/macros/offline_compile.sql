{#-
  Offline compile for `lakehouse check-sql`: `dbt compile --target trino` with no Trino
  server. dbt asks the warehouse which relations exist (is_incremental, load_relation)
  and which columns a relation has; with `--vars '{offline_compile: fresh|incremental}'`
  these answers come from the project instead: "fresh" = nothing exists yet (the
  full-refresh SQL), "incremental" = every model exists as a table (the incremental SQL).
  Columns are never known here: the checker infers them (lakehouse/dbt/sql_check.py).
  Without the var the adapter's own macros run, so normal runs are unchanged.
-#}
{% macro trino__list_relations_without_caching(relation) %}
  {%- set mode = var('offline_compile', none) -%}
  {%- if mode is none -%}
    {{ return(dbt.trino__list_relations_without_caching(relation)) }}
  {%- endif -%}
  {%- set rows = [] -%}
  {%- if mode == 'incremental' -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' -%}
      {%- if node.schema | lower == relation.schema | lower -%}
        {%- do rows.append([node.database, node.alias or node.name, node.schema, 'table']) -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(rows) }}
{% endmacro %}

{% macro trino__get_columns_in_relation(relation) %}
  {%- if var('offline_compile', none) is none -%}
    {{ return(dbt.trino__get_columns_in_relation(relation)) }}
  {%- endif -%}
  {{ return([]) }}
{% endmacro %}
