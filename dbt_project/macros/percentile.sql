{#- The p-th percentile of a column: DuckDB's quantile_cont locally, Trino's approx_percentile. -#}
{% macro percentile(column, fraction) -%}
    {%- if target.type == 'duckdb' -%}
        quantile_cont({{ column }}, {{ fraction }})
    {%- else -%}
        approx_percentile({{ column }}, {{ fraction }})
    {%- endif -%}
{%- endmacro %}
