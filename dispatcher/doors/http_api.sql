-- The HTTP API's own reads (dispatcher/doors/http_api.py); queuing goes through doors/intake.

-- name: owner
-- The key a message was queued with (NULL: not through a door), or no row.
SELECT key_id FROM dispatcher.messages WHERE id = $1;

-- name: stored_content
-- What an idempotency key already holds, to tell a retry (same message) from a conflict.
SELECT id, from_addr, to_addrs, cc_addrs, bcc_addrs, reply_to, subject, text_body, html_body,
       raw, configuration_set, tags
FROM dispatcher.messages WHERE id = ANY($1::bigint[]);
