-- The transactional outbox: applications enqueue mail inside their own transaction with
-- dispatcher.enqueue(...), so it is sent if and only if that transaction commits. And a wake-up:
-- every statement that inserts jobs notifies `dispatcher_jobs` (delivered at commit), so an
-- idle daemon claims new mail at once instead of at its next poll.

CREATE FUNCTION dispatcher.enqueue(
    from_addr         text,
    to_addrs          text[],
    subject           text,
    text_body         text DEFAULT NULL,
    html_body         text DEFAULT NULL,
    cc_addrs          text[] DEFAULT '{}',
    bcc_addrs         text[] DEFAULT '{}',
    reply_to          text[] DEFAULT '{}',
    idempotency_key   text DEFAULT NULL,
    priority          smallint DEFAULT 0,
    send_after        timestamptz DEFAULT NULL,
    tags              jsonb DEFAULT '{}',
    configuration_set text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
-- The same checks the database can make as the Python enqueue (dispatcher.queue.validate),
-- the same rows. An idempotency key already stored returns that message's id.
DECLARE
    n_recipients int := cardinality(coalesce(enqueue.to_addrs, '{}'))
                      + cardinality(coalesce(enqueue.cc_addrs, '{}'))
                      + cardinality(coalesce(enqueue.bcc_addrs, '{}'));
    address text;
    new_id bigint;
BEGIN
    IF coalesce(btrim(enqueue.from_addr), '') = '' OR position('@' IN enqueue.from_addr) = 0 THEN
        RAISE EXCEPTION 'dispatcher.enqueue: from_addr % is not an email address',
            coalesce(quote_literal(enqueue.from_addr), 'NULL')
            USING ERRCODE = '22023', HINT = 'give the sender, e.g. app@example.com';
    END IF;
    IF n_recipients = 0 THEN
        RAISE EXCEPTION 'dispatcher.enqueue: the message has no recipient'
            USING ERRCODE = '22023', HINT = 'give at least one address in to_addrs, cc_addrs or bcc_addrs';
    END IF;
    IF n_recipients > 50 THEN
        RAISE EXCEPTION 'dispatcher.enqueue: % recipients; SES accepts at most 50 per message',
            n_recipients
            USING ERRCODE = '22023', HINT = 'split it into several messages';
    END IF;
    FOREACH address IN ARRAY coalesce(enqueue.to_addrs, '{}') || coalesce(enqueue.cc_addrs, '{}')
                             || coalesce(enqueue.bcc_addrs, '{}') || coalesce(enqueue.reply_to, '{}') LOOP
        IF address IS NULL OR btrim(address) = '' OR position('@' IN address) = 0
           OR address ~ '[\r\n]' THEN
            RAISE EXCEPTION 'dispatcher.enqueue: % is not an email address',
                coalesce(quote_literal(address), 'NULL')
                USING ERRCODE = '22023', HINT = 'give addresses like name@example.com';
        END IF;
    END LOOP;
    IF coalesce(enqueue.text_body, '') = '' AND coalesce(enqueue.html_body, '') = '' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: the message has no body'
            USING ERRCODE = '22023', HINT = 'give text_body, html_body or both';
    END IF;
    IF coalesce(enqueue.subject, '') = '' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: the message has no subject'
            USING ERRCODE = '22023', HINT = 'give a subject';
    END IF;
    IF enqueue.tags ? 'dispatcher_id' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: the tag name dispatcher_id is reserved'
            USING ERRCODE = '22023', HINT = 'choose another tag name';
    END IF;
    IF enqueue.idempotency_key = '' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: idempotency_key is empty'
            USING ERRCODE = '22023', HINT = 'leave it NULL or give a non-empty key';
    END IF;

    INSERT INTO dispatcher.messages AS m (idempotency_key, from_addr, to_addrs, cc_addrs,
                                          bcc_addrs, reply_to, subject, text_body, html_body,
                                          configuration_set, tags)
    VALUES (enqueue.idempotency_key, enqueue.from_addr, coalesce(enqueue.to_addrs, '{}'),
            coalesce(enqueue.cc_addrs, '{}'), coalesce(enqueue.bcc_addrs, '{}'),
            coalesce(enqueue.reply_to, '{}'), enqueue.subject, enqueue.text_body,
            enqueue.html_body, enqueue.configuration_set, coalesce(enqueue.tags, '{}'))
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING m.id INTO new_id;
    IF new_id IS NULL THEN  -- the key is taken: that message is this one
        SELECT m.id INTO new_id FROM dispatcher.messages m
        WHERE m.idempotency_key = enqueue.idempotency_key;
        RETURN new_id;
    END IF;
    INSERT INTO dispatcher.jobs (id, priority, run_at, scheduled, recipients)
    VALUES (new_id, coalesce(enqueue.priority, 0), coalesce(enqueue.send_after, now()),
            enqueue.send_after IS NOT NULL, n_recipients);
    RETURN new_id;
END
$$;

CREATE FUNCTION dispatcher.notify_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dispatcher_jobs', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_inserted AFTER INSERT ON dispatcher.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION dispatcher.notify_jobs();
