{#-
  Each dbt invocation stages its external models under its own directory
  (<external_root>/<invocation_id>/), so two runs on one machine (a backfill beside
  build_gold, two test workers) never read each other's scratch Parquet. The plugin
  creates the directory when the connection opens and removes it when dbt exits.
-#}
{%- macro external_location(relation, config) -%}
  {%- if config.get('options', {}).get('partition_by') is none -%}
    {%- set format = config.get('format', 'parquet') -%}
    {{- adapter.external_root() }}/{{ invocation_id }}/{{ relation.identifier }}.{{ format }}
  {%- else -%}
    {{- adapter.external_root() }}/{{ invocation_id }}/{{ relation.identifier }}
  {%- endif -%}
{%- endmacro -%}
