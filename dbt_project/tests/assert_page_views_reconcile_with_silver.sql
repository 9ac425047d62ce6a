{{ config(meta={'dagster': {'ref': {'name': 'daily_page_views'}}}) }}
-- Gold must account for every silver page view: totals per day equal silver's.
with gold as (
    select sum(page_views) as n from {{ ref('daily_page_views') }}
),
silver as (
    select count(*) as n from {{ source('silver', 'page_views') }}
)
select gold.n as gold_views, silver.n as silver_views
from gold cross join silver
where gold.n <> silver.n
