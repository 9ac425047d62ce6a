select
    view_date,
    count(*) as page_views,
    count(distinct user_id) as visitors,
    count(distinct session_id) as sessions,
    count(distinct product_id) as products_viewed
from {{ ref('stg_page_views') }}
group by view_date
