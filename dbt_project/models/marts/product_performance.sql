-- Views, sales and revenue per product of the catalog (products never viewed or sold
-- appear with zeros, so a dead product is visible).
with views as (
    select product_id, count(*) as page_views
    from {{ ref('stg_page_views') }}
    where product_id is not null
    group by product_id
),

sales as (
    select
        items.product_id,
        count(distinct items.order_id) as orders,
        cast(sum(items.quantity) as bigint) as units_sold,
        sum(items.quantity * items.unit_price) as revenue
    from {{ ref('stg_order_items') }} as items
    inner join {{ ref('int_orders_enriched') }} as orders
        on items.order_id = orders.order_id
    where orders.is_revenue
    group by items.product_id
)

select
    products.product_id,
    products.product_name,
    products.category,
    products.list_price,
    coalesce(views.page_views, 0) as page_views,
    coalesce(sales.orders, 0) as orders,
    coalesce(sales.units_sold, 0) as units_sold,
    coalesce(sales.revenue, 0) as revenue,
    round(cast(coalesce(sales.orders, 0) as double) / nullif(views.page_views, 0), 4)
        as view_to_order_rate
from {{ ref('stg_products') }} as products
left join views on products.product_id = views.product_id
left join sales on products.product_id = sales.product_id
