{#-
    Partitioned by order_date and built one window of days at a time: Dagster passes
    the partition window in the environment (LAKEHOUSE_GOLD_WINDOW_START inclusive,
    LAKEHOUSE_GOLD_WINDOW_END exclusive; not as --vars, whose every change makes dbt
    re-parse the whole project), or by hand as vars min_date and max_date. Without
    either the model covers every day. Locally the Iceberg plugin replaces exactly the
    window's partitions; on Trino dbt-trino deletes and inserts those days.
-#}
{%- set min_date = var('min_date', none) or env_var('LAKEHOUSE_GOLD_WINDOW_START', '') or none -%}
{%- set max_date = var('max_date', none) or env_var('LAKEHOUSE_GOLD_WINDOW_END', '') or none -%}
{{
    config(
        materialized=('external' if target.type == 'duckdb' else 'incremental'),
        incremental_strategy='delete+insert',
        unique_key='order_date',
        on_schema_change='append_new_columns',
        tags=['daily'],
        iceberg_partition='order_date',
        iceberg_window=({'column': 'order_date', 'start': min_date, 'end': max_date}
            if min_date is not none else none),
        properties={
            'format': "'PARQUET'",
            'partitioning': "ARRAY['order_date']",
        },
    )
}}

select
    order_date,
    count(case when is_revenue then order_id end) as orders,
    count(case when not is_revenue then order_id end) as cancelled_orders,
    count(distinct case when is_revenue then customer_id end) as customers,
    cast(sum(case when is_revenue then units else 0 end) as bigint) as units_sold,
    sum(case when is_revenue then order_amount else 0 end) as revenue,
    round(
        cast(sum(case when is_revenue then order_amount else 0 end) as double)
        / nullif(count(case when is_revenue then order_id end), 0),
        2
    ) as avg_order_value
from {{ ref('int_orders_enriched') }}
{% if min_date is not none %}
where order_date >= cast('{{ min_date }}' as date)
    and order_date < cast('{{ max_date }}' as date)
{% endif %}
group by order_date
