-- Issue 16 item 7: dispatcher.enqueue_raw(), the SQL door for a complete MIME message (the
-- Django e-mail backend queues through it on Django's own connection, inside the request's
-- transaction). The envelope is given apart from the bytes, as SMTP gives it: a Bcc recipient
-- is in bcc_addrs, not in a header. The rules of the Python validator as far as SQL can: the
-- addresses normalised as dispatcher.enqueue() stores them, 1 to 50 recipients, at most 40 MiB,
-- no line over 998 characters, SES's rules for tags and the configuration set.

CREATE FUNCTION dispatcher.enqueue_raw(
    from_addr         text,
    to_addrs          text[],
    raw               bytea,
    cc_addrs          text[] DEFAULT '{}',
    bcc_addrs         text[] DEFAULT '{}',
    idempotency_key   text DEFAULT NULL,
    priority          smallint DEFAULT 0,
    send_after        timestamptz DEFAULT NULL,
    tags              jsonb DEFAULT '{}',
    configuration_set text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
-- An idempotency key already stored returns that message's id.
DECLARE
    n_recipients int := cardinality(coalesce(enqueue_raw.to_addrs, '{}'))
                      + cardinality(coalesce(enqueue_raw.cc_addrs, '{}'))
                      + cardinality(coalesce(enqueue_raw.bcc_addrs, '{}'));
    sender text;
    to_n text[];
    cc_n text[];
    bcc_n text[];
    tag record;
    new_id bigint;
BEGIN
    IF enqueue_raw.from_addr IS NULL OR btrim(enqueue_raw.from_addr) = '' THEN
        RAISE EXCEPTION 'dispatcher.enqueue_raw: from_addr is empty'
            USING ERRCODE = '22023', HINT = 'give the envelope sender, e.g. app@example.com';
    END IF;
    sender := dispatcher.normalize_mailbox('from_addr', enqueue_raw.from_addr);
    IF n_recipients = 0 THEN
        RAISE EXCEPTION 'dispatcher.enqueue_raw: the message has no recipient'
            USING ERRCODE = '22023',
                  HINT = 'give at least one address in to_addrs, cc_addrs or bcc_addrs';
    END IF;
    IF n_recipients > 50 THEN
        RAISE EXCEPTION 'dispatcher.enqueue_raw: % recipients; SES accepts at most 50 per message',
            n_recipients
            USING ERRCODE = '22023', HINT = 'split it into several messages';
    END IF;
    to_n := dispatcher.normalize_mailboxes('to_addrs', enqueue_raw.to_addrs);
    cc_n := dispatcher.normalize_mailboxes('cc_addrs', enqueue_raw.cc_addrs);
    bcc_n := dispatcher.normalize_mailboxes('bcc_addrs', enqueue_raw.bcc_addrs);
    IF enqueue_raw.raw IS NULL OR octet_length(enqueue_raw.raw) = 0 THEN
        RAISE EXCEPTION 'dispatcher.enqueue_raw: raw is empty'
            USING ERRCODE = '22023', HINT = 'give the complete MIME message, headers and body';
    END IF;
    IF octet_length(enqueue_raw.raw) > 41943040 THEN
        RAISE EXCEPTION 'dispatcher.enqueue_raw: the message is % bytes; SES takes at most 41943040 (40 MiB)',
            octet_length(enqueue_raw.raw)
            USING ERRCODE = '22023', HINT = 'host large content elsewhere and link to it';
    END IF;
    -- 999 bytes without CR or LF. The escape encoding writes a NUL or 8-bit byte as \nnn and a
    -- backslash as \\: each is put back to one character first. (A bound in a Postgres regular
    -- expression is at most 255, hence 9 x 111.)
    IF octet_length(enqueue_raw.raw) > 998
       AND regexp_replace(encode(enqueue_raw.raw, 'escape'), '\\([0-7]{3}|\\)', '.', 'g')
           ~ '(?:[^\r\n]{111}){9}' THEN
        RAISE EXCEPTION 'dispatcher.enqueue_raw: raw has a line longer than 998 characters'
            USING ERRCODE = '22023',
                  HINT = 'fold long headers and encode the body (quoted-printable or base64)';
    END IF;
    IF enqueue_raw.configuration_set IS NOT NULL
       AND enqueue_raw.configuration_set !~ '^[A-Za-z0-9_-]{1,64}$' THEN
        RAISE EXCEPTION 'dispatcher.enqueue_raw: configuration set % is not a valid name',
            quote_literal(enqueue_raw.configuration_set)
            USING ERRCODE = '22023', HINT = 'SES takes 1 to 64 ASCII letters, digits, _ and -';
    END IF;
    IF enqueue_raw.tags IS NOT NULL THEN
        IF jsonb_typeof(enqueue_raw.tags) <> 'object' THEN
            RAISE EXCEPTION 'dispatcher.enqueue_raw: tags must be a JSON object'
                USING ERRCODE = '22023', HINT = 'e.g. ''{"campaign": "spring"}''';
        END IF;
        FOR tag IN SELECT key, value FROM jsonb_each(enqueue_raw.tags) LOOP
            IF tag.key = 'dispatcher_id' THEN
                RAISE EXCEPTION 'dispatcher.enqueue_raw: the tag name dispatcher_id is reserved'
                    USING ERRCODE = '22023', HINT = 'choose another tag name';
            END IF;
            IF tag.key !~ '^[A-Za-z0-9_-]{1,255}$' OR jsonb_typeof(tag.value) <> 'string'
               OR tag.value #>> '{}' !~ '^[A-Za-z0-9_-]{1,255}$' THEN
                RAISE EXCEPTION 'dispatcher.enqueue_raw: tag % = % is not valid',
                    quote_literal(tag.key), tag.value::text
                    USING ERRCODE = '22023',
                          HINT = 'tag names and values are strings of 1 to 255 ASCII letters, '
                                 'digits, _ and - (an SES rule)';
            END IF;
        END LOOP;
    END IF;
    IF enqueue_raw.idempotency_key = '' OR length(enqueue_raw.idempotency_key) > 200 THEN
        RAISE EXCEPTION 'dispatcher.enqueue_raw: idempotency_key is empty or longer than 200 characters'
            USING ERRCODE = '22023', HINT = 'leave it NULL or give a key of 1 to 200 characters';
    END IF;

    INSERT INTO dispatcher.messages AS m (idempotency_key, from_addr, to_addrs, cc_addrs,
                                          bcc_addrs, raw, configuration_set, tags)
    VALUES (enqueue_raw.idempotency_key, sender, to_n, cc_n, bcc_n, enqueue_raw.raw,
            enqueue_raw.configuration_set, coalesce(enqueue_raw.tags, '{}'))
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING m.id INTO new_id;
    IF new_id IS NULL THEN  -- the key is taken: that message is this one
        SELECT m.id INTO new_id FROM dispatcher.messages m
        WHERE m.idempotency_key = enqueue_raw.idempotency_key;
        RETURN new_id;
    END IF;
    INSERT INTO dispatcher.jobs (id, priority, run_at, scheduled, recipients)
    VALUES (new_id, coalesce(enqueue_raw.priority, 0), coalesce(enqueue_raw.send_after, now()),
            enqueue_raw.send_after IS NOT NULL, n_recipients);
    RETURN new_id;
END
$$;
