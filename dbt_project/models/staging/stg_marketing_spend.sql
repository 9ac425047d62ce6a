select
    spend_date,
    channel,
    campaign,
    spend as spend_amount,
    currency
from {{ source('silver', 'marketing_spend') }}
