-- name: engaged_buyers
-- description: Recent, engaged buyers — or loyal big spenders with a sizeable recent order.
-- dialect: postgres
SELECT c.customer_id, c.email
FROM customer_data c
WHERE (c.purchase_date >= CURRENT_DATE - INTERVAL '30 days' AND COALESCE(c.engagement_score, 0)::numeric > 80)
   OR (c.order_count >= 3
       AND c.total_spent >= 200
       AND c.email NOT LIKE '%@example.com'
       AND EXISTS (SELECT 1 FROM orders o
                   WHERE o.customer_id = c.customer_id
                     AND o.total > 50
                     AND o.created_at >= now() - INTERVAL '90 days'))
