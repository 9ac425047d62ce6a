select
    order_id,
    customer_id,
    status as order_status,
    channel,
    order_ts as ordered_at,
    cast(order_ts as date) as order_date
from {{ source('silver', 'orders') }}
