-- High-value customers who bought in the last 30 days and are highly engaged.
-- Written in MySQL, exactly as in the brief; Personify transpiles it to the warehouse's dialect.
-- dialect: mysql
SELECT customer_id, email, purchase_date, engagement_score FROM customer_data WHERE purchase_date >= DATE_SUB(CURRENT_DATE, INTERVAL 30 DAY) AND engagement_score > 80;
