-- PII (email, full_name) stays out of gold: only analytical attributes are staged.
select
    customer_id,
    country,
    signup_date,
    credit as store_credit
from {{ source('silver', 'customers') }}
