-- One row per order with its amount and line count. Revenue counts every order that
-- was not cancelled (placed, paid, shipped): the shop books revenue at checkout.
with lines as (
    select
        order_id,
        count(*) as line_count,
        cast(sum(quantity) as bigint) as units,
        sum(quantity * unit_price) as order_amount
    from {{ ref('stg_order_items') }}
    group by order_id
)

select
    orders.order_id,
    orders.customer_id,
    orders.order_status,
    orders.channel,
    orders.ordered_at,
    orders.order_date,
    coalesce(lines.line_count, 0) as line_count,
    coalesce(lines.units, 0) as units,
    coalesce(lines.order_amount, 0) as order_amount,
    orders.order_status <> 'cancelled' as is_revenue
from {{ ref('stg_orders') }} as orders
left join lines on orders.order_id = lines.order_id
