-- name: vip
-- description: The loyalty team's VIP sheet (an uploaded list), matched to customers.
-- The list comes from a file, not a source: `personify lists upload vip data/lists/vip.csv`
-- (personify demo uploads it). A member who becomes a customer later joins at the next refresh.
SELECT customer_id FROM list_customers WHERE list = 'vip'
