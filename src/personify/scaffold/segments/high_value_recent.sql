-- name: high_value_recent
-- description: High-value customers who bought in the last 30 days and are highly engaged.
-- dialect: mysql
-- refresh: real-time
-- Written in MySQL, exactly as in the brief; Personify transpiles it to the warehouse's dialect,
-- and CURRENT_DATE follows --now.
SELECT customer_id, email, purchase_date, engagement_score FROM customer_data WHERE purchase_date >= DATE_SUB(CURRENT_DATE, INTERVAL 30 DAY) AND engagement_score > 80;
