-- name: likely_buyers
-- description: Customers the purchase model expects to buy again soon and to spend well.
-- p_alive, expected_orders and predicted_clv are predictive traits (traits.predictive in
-- personify.yml): fit on the shop's own orders at every profile build (see
-- `personify traits predictive`). NULL until there are enough orders to fit.
SELECT customer_id FROM customer_data
WHERE p_alive >= 0.5 AND expected_orders >= 1 AND predicted_clv >= 100
