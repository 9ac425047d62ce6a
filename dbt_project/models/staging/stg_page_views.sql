select
    event_id,
    user_id,
    session_id,
    page,
    product_id,
    event_ts as viewed_at,
    event_date as view_date
from {{ source('silver', 'page_views') }}
