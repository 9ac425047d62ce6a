-- Customers and revenue per country and value tier, built on the lifetime values:
-- a failed blocking test on customer_lifetime_value stops this model.
select
    coalesce(country, 'unknown') as country,
    case
        when lifetime_revenue >= 500 then 'high'
        when lifetime_revenue >= 100 then 'medium'
        else 'low'
    end as value_tier,
    count(*) as customers,
    sum(lifetime_revenue) as revenue
from {{ ref('customer_lifetime_value') }}
group by 1, 2
