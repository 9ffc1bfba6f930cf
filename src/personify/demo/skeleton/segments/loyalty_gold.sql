-- name: loyalty_gold
-- description: Gold members of the loyalty programme: the data team's own table, a relation.
-- `loyalty` is not a Personify table: personify.yml's `relations: {loyalty: analytics.loyalty}`
-- lets segments read the team's table under that name (personify demo loaded it there).
SELECT c.customer_id FROM customer_data c JOIN loyalty l ON l.email = c.email
WHERE l.tier = 'gold'
