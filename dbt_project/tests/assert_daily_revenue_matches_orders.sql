{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'daily_revenue'}}}) }}
-- Each built day of daily_revenue equals the revenue of silver's orders that day.
-- A warning, not an error: an order cancelled after its day was built is a late
-- correction that the next build of that partition picks up.
with expected as (
    select order_date, sum(case when is_revenue then order_amount else 0 end) as revenue
    from {{ ref('int_orders_enriched') }}
    group by order_date
)
select built.order_date, built.revenue as built_revenue, expected.revenue as silver_revenue
from {{ ref('daily_revenue') }} as built
left join expected on built.order_date = expected.order_date
where expected.revenue is null or built.revenue <> expected.revenue
