-- Spend against the revenue of orders attributed to the same channel and day.
-- Channels without spend (direct) have no ROI and are left out.
with spend as (
    select spend_date, channel, sum(spend_amount) as spend, count(*) as campaigns
    from {{ ref('stg_marketing_spend') }}
    group by spend_date, channel
),

attributed as (
    select
        order_date,
        channel,
        count(*) as orders,
        sum(order_amount) as revenue
    from {{ ref('int_orders_enriched') }}
    where is_revenue
    group by order_date, channel
)

select
    spend.spend_date,
    spend.channel,
    spend.campaigns,
    spend.spend,
    coalesce(attributed.orders, 0) as orders,
    coalesce(attributed.revenue, 0) as revenue,
    round(cast(coalesce(attributed.revenue, 0) as double) / nullif(spend.spend, 0), 4) as roas
from spend
left join attributed
    on spend.spend_date = attributed.order_date
    and spend.channel = attributed.channel
