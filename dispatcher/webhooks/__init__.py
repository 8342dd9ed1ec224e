"""Webhooks out: one signed POST per message event to each configured endpoint, from a durable
outbox that Postgres triggers fill in the transaction of the change (README "Webhooks")."""
