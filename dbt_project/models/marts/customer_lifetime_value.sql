-- Every customer who ordered, with what they brought in so far. A customer deleted
-- from the shop keeps their history here; their attributes are then null.
with per_customer as (
    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(case when is_revenue then order_id end) as orders,
        sum(case when is_revenue then order_amount else 0 end) as lifetime_revenue
    from {{ ref('int_orders_enriched') }}
    group by customer_id
)

select
    per_customer.customer_id,
    customers.country,
    customers.signup_date,
    per_customer.first_order_date,
    per_customer.last_order_date,
    per_customer.orders,
    per_customer.lifetime_revenue,
    round(
        cast(per_customer.lifetime_revenue as double) / nullif(per_customer.orders, 0), 2
    ) as avg_order_value
from per_customer
left join {{ ref('stg_customers') }} as customers
    on per_customer.customer_id = customers.customer_id
