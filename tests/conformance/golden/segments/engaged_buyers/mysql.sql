-- name: engaged_buyers
-- description: Recent, engaged buyers — or loyal big spenders with a sizeable recent order.
-- dialect: mysql
SELECT c.customer_id, c.email
FROM customer_data AS c
WHERE (c.purchase_date >= DATE_SUB(CURRENT_DATE, INTERVAL 30 DAY) AND IFNULL(c.engagement_score, 0) > 80)
   OR (c.order_count >= 3
       AND c.total_spent >= 200
       AND c.email NOT LIKE '%@example.com'
       AND EXISTS (SELECT 1 FROM orders AS o
                   WHERE o.customer_id = c.customer_id
                     AND o.total > 50
                     AND o.created_at >= DATE_SUB(NOW(), INTERVAL 90 DAY)));
