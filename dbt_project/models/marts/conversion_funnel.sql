-- The daily funnel by sessions: any view -> a product page -> the cart page -> the
-- checkout page. A session counts at a step only if it also reached every earlier
-- step, so the steps never grow. Orders booked that day close the funnel (orders
-- carry no session id, so the last step is a daily count rather than a session join).
with sessions as (
    select
        view_date,
        session_id,
        max(case when product_id is not null then 1 else 0 end) as saw_product,
        max(case when page = '/cart' then 1 else 0 end) as saw_cart,
        max(case when page = '/checkout' then 1 else 0 end) as saw_checkout
    from {{ ref('stg_page_views') }}
    group by view_date, session_id
),

funnel as (
    select
        view_date,
        count(*) as sessions,
        cast(sum(saw_product) as bigint) as product_sessions,
        cast(sum(saw_product * saw_cart) as bigint) as cart_sessions,
        cast(sum(saw_product * saw_cart * saw_checkout) as bigint) as checkout_sessions
    from sessions
    group by view_date
),

booked as (
    select order_date, count(*) as orders
    from {{ ref('int_orders_enriched') }}
    where is_revenue
    group by order_date
)

select
    funnel.view_date as funnel_date,
    funnel.sessions,
    funnel.product_sessions,
    funnel.cart_sessions,
    funnel.checkout_sessions,
    coalesce(booked.orders, 0) as orders,
    round(cast(funnel.product_sessions as double) / nullif(funnel.sessions, 0), 4)
        as product_rate,
    round(cast(funnel.cart_sessions as double) / nullif(funnel.product_sessions, 0), 4)
        as cart_rate,
    round(cast(funnel.checkout_sessions as double) / nullif(funnel.cart_sessions, 0), 4)
        as checkout_rate,
    round(cast(coalesce(booked.orders, 0) as double) / nullif(funnel.sessions, 0), 4)
        as order_rate
from funnel
left join booked on funnel.view_date = booked.order_date
