-- name: engaged_buyers
-- description: Recent, engaged buyers — or loyal big spenders with a sizeable recent order.
-- dialect: snowflake
SELECT c.customer_id, c.email
FROM customer_data c
WHERE (c.purchase_date >= DATEADD(day, -30, CURRENT_DATE()) AND NVL(c.engagement_score, 0) > 80)
   OR (c.order_count >= 3
       AND c.total_spent >= 200
       AND NOT ENDSWITH(c.email, '@example.com')
       AND EXISTS (SELECT 1 FROM orders o
                   WHERE o.customer_id = c.customer_id
                     AND o.total > 50
                     AND o.created_at >= DATEADD(day, -90, CURRENT_TIMESTAMP())))
