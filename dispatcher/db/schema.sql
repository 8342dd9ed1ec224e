-- The declared schema: what the numbered migrations (migrations/NNNN_*.sql) build, as one file
-- to read. The dispatcher never runs it; tests/integration/test_schema.py checks that a database
-- migrated from scratch has exactly this schema (tables, columns, constraints, indexes, types,
-- functions, triggers). A new migration updates this file too (pg_dump --schema-only --no-owner
-- --no-privileges --schema=dispatcher --exclude-table=dispatcher.schema_migrations, minus the
-- SET lines and comments).

CREATE SCHEMA dispatcher;

CREATE TYPE dispatcher.campaign_state AS ENUM (
    'draft',
    'running',
    'paused',
    'cancelled',
    'finished'
);

CREATE TYPE dispatcher.job_state AS ENUM (
    'queued',
    'claimed',
    'in_flight',
    'sent',
    'failed',
    'unknown',
    'cancelled',
    'held'
);

CREATE FUNCTION dispatcher.enqueue(from_addr text, to_addrs text[], subject text, text_body text DEFAULT NULL::text, html_body text DEFAULT NULL::text, cc_addrs text[] DEFAULT '{}'::text[], bcc_addrs text[] DEFAULT '{}'::text[], reply_to text[] DEFAULT '{}'::text[], idempotency_key text DEFAULT NULL::text, priority smallint DEFAULT 0, send_after timestamp with time zone DEFAULT NULL::timestamp with time zone, tags jsonb DEFAULT '{}'::jsonb, configuration_set text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE plpgsql
    AS $_$
#variable_conflict use_column
-- The rules of the Python validator (dispatcher.domain.validate) as far as SQL can, the same
-- normalised rows. An idempotency key already stored returns that message's id.
DECLARE
    n_recipients int := cardinality(coalesce(enqueue.to_addrs, '{}'))
                      + cardinality(coalesce(enqueue.cc_addrs, '{}'))
                      + cardinality(coalesce(enqueue.bcc_addrs, '{}'));
    sender text;
    to_n text[];
    cc_n text[];
    bcc_n text[];
    reply_n text[];
    tag record;
    size bigint;
    new_id bigint;
BEGIN
    IF enqueue.from_addr IS NULL OR btrim(enqueue.from_addr) = '' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: from_addr is empty'
            USING ERRCODE = '22023', HINT = 'give the sender, e.g. app@example.com';
    END IF;
    sender := dispatcher.normalize_mailbox('from_addr', enqueue.from_addr);
    IF n_recipients = 0 THEN
        RAISE EXCEPTION 'dispatcher.enqueue: the message has no recipient'
            USING ERRCODE = '22023', HINT = 'give at least one address in to_addrs, cc_addrs or bcc_addrs';
    END IF;
    IF n_recipients > 50 THEN
        RAISE EXCEPTION 'dispatcher.enqueue: % recipients; SES accepts at most 50 per message',
            n_recipients
            USING ERRCODE = '22023', HINT = 'split it into several messages';
    END IF;
    to_n := dispatcher.normalize_mailboxes('to_addrs', enqueue.to_addrs);
    cc_n := dispatcher.normalize_mailboxes('cc_addrs', enqueue.cc_addrs);
    bcc_n := dispatcher.normalize_mailboxes('bcc_addrs', enqueue.bcc_addrs);
    reply_n := dispatcher.normalize_mailboxes('reply_to', enqueue.reply_to);
    IF coalesce(enqueue.text_body, '') = '' AND coalesce(enqueue.html_body, '') = '' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: the message has no body'
            USING ERRCODE = '22023', HINT = 'give text_body, html_body or both';
    END IF;
    IF coalesce(enqueue.subject, '') = '' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: the message has no subject'
            USING ERRCODE = '22023', HINT = 'give a subject';
    END IF;
    IF enqueue.subject ~ '[\x01-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: the subject % contains a line break or control character',
            quote_literal(enqueue.subject)
            USING ERRCODE = '22023', HINT = 'a mail header cannot hold one: write it on one line';
    END IF;
    IF length(enqueue.subject) + length('Subject: ') > 998 THEN
        RAISE EXCEPTION 'dispatcher.enqueue: the subject is % characters long',
            length(enqueue.subject)
            USING ERRCODE = '22023', HINT = 'SES takes header lines of at most 998 characters: shorten it';
    END IF;
    size := octet_length(enqueue.subject) + coalesce(octet_length(enqueue.text_body), 0)
            + coalesce(octet_length(enqueue.html_body), 0);
    IF size > 41943040 THEN
        RAISE EXCEPTION 'dispatcher.enqueue: the message is % bytes (before MIME encoding); SES takes at most 41943040 (40 MiB) including encoding',
            size
            USING ERRCODE = '22023', HINT = 'host large content elsewhere and link to it';
    END IF;
    IF enqueue.configuration_set IS NOT NULL
       AND enqueue.configuration_set !~ '^[A-Za-z0-9_-]{1,64}$' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: configuration set % is not a valid name',
            quote_literal(enqueue.configuration_set)
            USING ERRCODE = '22023', HINT = 'SES takes 1 to 64 ASCII letters, digits, _ and -';
    END IF;
    IF enqueue.tags IS NOT NULL THEN
        IF jsonb_typeof(enqueue.tags) <> 'object' THEN
            RAISE EXCEPTION 'dispatcher.enqueue: tags must be a JSON object'
                USING ERRCODE = '22023', HINT = 'e.g. ''{"campaign": "spring"}''';
        END IF;
        FOR tag IN SELECT key, value FROM jsonb_each(enqueue.tags) LOOP
            IF tag.key = 'dispatcher_id' THEN
                RAISE EXCEPTION 'dispatcher.enqueue: the tag name dispatcher_id is reserved'
                    USING ERRCODE = '22023', HINT = 'choose another tag name';
            END IF;
            IF tag.key !~ '^[A-Za-z0-9_-]{1,255}$' OR jsonb_typeof(tag.value) <> 'string'
               OR tag.value #>> '{}' !~ '^[A-Za-z0-9_-]{1,255}$' THEN
                RAISE EXCEPTION 'dispatcher.enqueue: tag % = % is not valid',
                    quote_literal(tag.key), tag.value::text
                    USING ERRCODE = '22023',
                          HINT = 'tag names and values are strings of 1 to 255 ASCII letters, '
                                 'digits, _ and - (an SES rule)';
            END IF;
        END LOOP;
    END IF;
    IF enqueue.idempotency_key = '' OR length(enqueue.idempotency_key) > 200 THEN
        RAISE EXCEPTION 'dispatcher.enqueue: idempotency_key is empty or longer than 200 characters'
            USING ERRCODE = '22023', HINT = 'leave it NULL or give a key of 1 to 200 characters';
    END IF;

    INSERT INTO dispatcher.messages AS m (idempotency_key, from_addr, to_addrs, cc_addrs,
                                          bcc_addrs, reply_to, subject, text_body, html_body,
                                          configuration_set, tags)
    VALUES (enqueue.idempotency_key, sender, to_n, cc_n, bcc_n, reply_n, enqueue.subject,
            enqueue.text_body, enqueue.html_body, enqueue.configuration_set,
            coalesce(enqueue.tags, '{}'))
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
$_$;

CREATE FUNCTION dispatcher.enqueue_raw(from_addr text, to_addrs text[], raw bytea, cc_addrs text[] DEFAULT '{}'::text[], bcc_addrs text[] DEFAULT '{}'::text[], idempotency_key text DEFAULT NULL::text, priority smallint DEFAULT 0, send_after timestamp with time zone DEFAULT NULL::timestamp with time zone, tags jsonb DEFAULT '{}'::jsonb, configuration_set text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE plpgsql
    AS $_$
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
$_$;

CREATE FUNCTION dispatcher.normalize_mailbox(field text, given text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    AS $_$
DECLARE
    s text := btrim(given);
    parts text[];
    name text;
    spec text;
    local text;
    domain text;
    formatted text;
BEGIN
    IF given IS NULL OR s = '' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: % is empty', field
            USING ERRCODE = '22023', HINT = 'give an email address like name@example.com';
    END IF;
    IF given ~ '[\x01-\x1f\x7f-\x9f\u2028\u2029]' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: % % contains a line break or control character',
            field, quote_literal(given)
            USING ERRCODE = '22023', HINT = 'remove it: it would start a new mail header';
    END IF;
    parts := regexp_match(s, '^(.*?)\s*<([^<>]*)>$');
    IF parts IS NOT NULL THEN
        name := btrim(parts[1]);
        spec := btrim(parts[2]);
        IF name ~ '^".*"$' AND length(name) >= 2 THEN
            name := btrim(regexp_replace(substr(name, 2, length(name) - 2), '\\(.)', '\1', 'g'));
        ELSIF name ~ '[<>@,;:"\[\]\\]' THEN
            RAISE EXCEPTION 'dispatcher.enqueue: % % is not one address', field, quote_literal(given)
                USING ERRCODE = '22023',
                      HINT = 'put a display name with , ; : @ < > or quotes in double quotes; '
                             'give several addresses as separate array elements';
        ELSE
            name := regexp_replace(name, '\s+', ' ', 'g');
        END IF;
    ELSIF s ~ '[<>]' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: % % has an unmatched < or >', field, quote_literal(given)
            USING ERRCODE = '22023', HINT = 'give an address like Name <name@example.com>';
    ELSE
        spec := s;
    END IF;
    local := substring(spec FROM '^(.*)@[^@]*$');
    domain := lower(substring(spec FROM '@([^@]*)$'));
    IF local IS NULL OR domain ~ '[^\x01-\x7f]' OR local ~ '[^\x01-\x7f]' THEN
        RAISE EXCEPTION 'dispatcher.enqueue: % % is not an email address SQL can take',
            field, quote_literal(given)
            USING ERRCODE = '22023',
                  HINT = 'give an address like name@example.com; write an internationalised '
                         'domain in punycode (xn--...), or enqueue from Python, which converts it';
    END IF;
    IF local !~ '^[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]+)*$'
       OR length(local) > 64
       OR domain !~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'
       OR domain !~ '[a-z][a-z0-9-]*$'
       OR domain ~ '(^|\.)(arpa|invalid|local|localhost|onion|test)$'
       OR length(local) + 1 + length(domain) > 254 THEN
        RAISE EXCEPTION 'dispatcher.enqueue: % % is not a valid email address',
            field, quote_literal(given)
            USING ERRCODE = '22023',
                  HINT = 'give one address like name@example.com (several go in separate '
                         'array elements)';
    END IF;
    formatted := local || '@' || domain;
    IF coalesce(name, '') <> '' THEN
        IF name ~ '^=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=( =\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)*$' THEN
            formatted := name || ' <' || formatted || '>';  -- already RFC 2047-encoded
        ELSIF name ~ '[^\x01-\x7f]' THEN
            RAISE EXCEPTION 'dispatcher.enqueue: % % has a non-ASCII display name',
                field, quote_literal(given)
                USING ERRCODE = '22023',
                      HINT = 'encode it as RFC 2047 (=?utf-8?b?...?=), or enqueue from Python, '
                             'which does';
        ELSE
            formatted := '"' || replace(replace(name, '\', '\\'), '"', '\"') || '" <'
                         || formatted || '>';
        END IF;
    END IF;
    IF length(formatted) + length('Reply-To: ') > 998 THEN
        RAISE EXCEPTION 'dispatcher.enqueue: % makes a header line longer than 998 characters',
            field
            USING ERRCODE = '22023', HINT = 'shorten the display name';
    END IF;
    RETURN formatted;
END
$_$;

CREATE FUNCTION dispatcher.normalize_mailboxes(field text, given text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT coalesce(array_agg(dispatcher.normalize_mailbox(field || '[' || (n - 1) || ']', a)
                              ORDER BY n), '{}')
    FROM unnest(coalesce(given, '{}')) WITH ORDINALITY AS t(a, n)
$$;

CREATE FUNCTION dispatcher.notify_jobs() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('dispatcher_jobs', '');
    RETURN NULL;
END
$$;

CREATE FUNCTION dispatcher.unmaterialised_state(campaign dispatcher.campaign_state) RETURNS dispatcher.job_state
    LANGUAGE sql IMMUTABLE
    AS $$
SELECT CASE campaign
           WHEN 'running' THEN 'queued'::dispatcher.job_state
           WHEN 'cancelled' THEN 'cancelled'::dispatcher.job_state
           ELSE 'held'::dispatcher.job_state
       END
$$;

CREATE FUNCTION dispatcher.requeue_state(campaign bigint) RETURNS dispatcher.job_state
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    s dispatcher.campaign_state;
BEGIN
    IF campaign IS NULL THEN
        RETURN 'queued';
    END IF;
    SELECT state INTO s FROM dispatcher.campaigns WHERE id = campaign;
    IF s IN ('draft', 'paused') THEN
        RETURN 'held';
    ELSIF s = 'cancelled' THEN
        RETURN 'cancelled';
    END IF;
    RETURN 'queued';
END
$$;

CREATE FUNCTION dispatcher.route_job() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    SELECT r.account, r.fallback INTO NEW.account, NEW.fallback
    FROM dispatcher.route_of(NEW.id) r;
    RETURN NEW;
END
$$;

CREATE FUNCTION dispatcher.route_of(message_id bigint, OUT account text, OUT fallback text) RETURNS record
    LANGUAGE plpgsql
    AS $_$
#variable_conflict use_column
BEGIN
SELECT CASE WHEN p.paused THEN r.fallback
            ELSE coalesce(r.account,
                          (SELECT a.name FROM dispatcher.accounts a ORDER BY a.position LIMIT 1))
       END,
       CASE WHEN p.paused THEN NULL ELSE r.fallback END
INTO route_of.account, route_of.fallback
FROM dispatcher.messages msg
CROSS JOIN LATERAL (
    SELECT lower(substring(msg.from_addr FROM '@([^@<>\s"]+)>?\s*$')) AS domain
) f
LEFT JOIN dispatcher.api_keys k ON k.id = msg.key_id
LEFT JOIN dispatcher.campaigns c ON c.id = msg.campaign_id
LEFT JOIN LATERAL (
    SELECT r.account, r.fallback FROM dispatcher.routes r
    WHERE (r.from_domains = '{}' OR EXISTS (
              SELECT 1 FROM unnest(r.from_domains) d
              WHERE d = f.domain OR (d LIKE '*.%' AND f.domain LIKE '%' || substr(d, 2))))
      AND (r.campaigns = '{}' OR c.id::text = ANY (r.campaigns) OR c.name = ANY (r.campaigns))
      AND (r.key_names = '{}' OR k.name = ANY (r.key_names))
      AND (r.tags = '{}' OR EXISTS (
              SELECT 1 FROM unnest(r.tags) t
              WHERE msg.tags ->> split_part(t, '=', 1) = substr(t, strpos(t, '=') + 1)))
    ORDER BY r.position
    LIMIT 1
) r ON true
LEFT JOIN LATERAL (
    SELECT true AS paused FROM dispatcher.accounts a
    WHERE r.fallback IS NOT NULL AND a.name = r.account AND a.paused_at IS NOT NULL
) p ON true
WHERE msg.id = route_of.message_id;
END
$_$;

CREATE FUNCTION dispatcher.webhook_events_updated() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM dispatcher.webhook_endpoints
                   WHERE events && '{delivered,bounced,complained,delayed}'::text[]) THEN
        RETURN NULL;
    END IF;
    INSERT INTO dispatcher.webhook_deliveries (endpoint_id, type, message_id, data, seq)
    SELECT e.id, c.type, c.message_id,
           dispatcher.webhook_message(m.campaign_id, m.idempotency_key, m.from_addr, m.to_addrs,
                                      m.cc_addrs, m.bcc_addrs, m.subject, m.tags)
           || jsonb_build_object('ses_message_id', c.ses_message_id,
                                 'event_type', c.event_type,
                                 'occurred_at', dispatcher.webhook_time(c.occurred_at),
                                 'recipients', coalesce(c.parsed -> 'recipients', '[]'),
                                 'bounce_type', c.parsed -> 'bounce_type',
                                 'bounce_subtype', c.parsed -> 'bounce_subtype',
                                 'complaint_type', c.parsed -> 'complaint_type',
                                 'detail', c.parsed -> 'detail'),
           NULL  -- placed by the sender loop (see webhook_order_seq)
    FROM (SELECT n.*, CASE n.kind WHEN 'delivery' THEN 'delivered' WHEN 'bounce' THEN 'bounced'
                                  WHEN 'complaint' THEN 'complained' ELSE 'delayed' END AS type
          FROM new_events n JOIN old_events o ON o.id = n.id
          WHERE n.message_id IS NOT NULL AND n.processed_at IS NOT NULL
            AND (o.processed_at IS NULL OR o.message_id IS NULL)
            AND n.kind IN ('delivery', 'bounce', 'complaint', 'delivery_delay')) c
    JOIN dispatcher.webhook_endpoints e ON c.type = ANY (e.events)
    LEFT JOIN dispatcher.messages m ON m.id = c.message_id
    ORDER BY coalesce(c.occurred_at, c.received_at), c.id, e.id;
    RETURN NULL;
END
$$;

CREATE FUNCTION dispatcher.webhook_jobs_inserted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM dispatcher.webhook_endpoints WHERE 'queued' = ANY (events)) THEN
        RETURN NULL;  -- nobody listens: the hot path pays one look at a tiny table
    END IF;
    INSERT INTO dispatcher.webhook_deliveries (endpoint_id, type, message_id, data)
    SELECT e.id, 'queued', j.id,
           dispatcher.webhook_message(m.campaign_id, m.idempotency_key, m.from_addr, m.to_addrs,
                                      m.cc_addrs, m.bcc_addrs, m.subject, m.tags)
           || jsonb_build_object('priority', j.priority,
                                 'send_after', CASE WHEN j.scheduled
                                                    THEN dispatcher.webhook_time(j.run_at) END)
    FROM new_jobs j
    CROSS JOIN dispatcher.webhook_endpoints e
    LEFT JOIN dispatcher.messages m ON m.id = j.id
    WHERE 'queued' = ANY (e.events)
    ORDER BY j.id, e.id;
    RETURN NULL;
END
$$;

CREATE FUNCTION dispatcher.webhook_jobs_updated() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM dispatcher.webhook_endpoints
                   WHERE events && '{sent,failed,in_doubt,cancelled}'::text[]) THEN
        RETURN NULL;
    END IF;
    INSERT INTO dispatcher.webhook_deliveries (endpoint_id, type, message_id, data)
    SELECT e.id, c.type, c.id,
           dispatcher.webhook_message(m.campaign_id, m.idempotency_key, m.from_addr, m.to_addrs,
                                      m.cc_addrs, m.bcc_addrs, m.subject, m.tags)
           || jsonb_build_object('ses_message_id', c.ses_message_id, 'attempts', c.attempts,
                                 'outcome', c.last_outcome, 'error', c.last_error,
                                 'sent_at', dispatcher.webhook_time(c.sent_at))
    FROM (SELECT n.*, CASE n.state WHEN 'unknown' THEN 'in_doubt' ELSE n.state::text END AS type
          FROM new_jobs n JOIN old_jobs o ON o.id = n.id
          WHERE n.state IS DISTINCT FROM o.state
            AND n.state IN ('sent', 'failed', 'unknown', 'cancelled')) c
    JOIN dispatcher.webhook_endpoints e ON c.type = ANY (e.events)
    LEFT JOIN dispatcher.messages m ON m.id = c.id
    ORDER BY c.id, e.id;
    RETURN NULL;
END
$$;

CREATE FUNCTION dispatcher.webhook_message(campaign_id bigint, idempotency_key text, from_addr text, to_addrs text[], cc_addrs text[], bcc_addrs text[], subject text, tags jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT jsonb_build_object('campaign_id', campaign_id, 'idempotency_key', idempotency_key,
                              'from', from_addr, 'to', to_jsonb(coalesce(to_addrs, '{}')),
                              'cc', to_jsonb(coalesce(cc_addrs, '{}')),
                              'bcc', to_jsonb(coalesce(bcc_addrs, '{}')), 'subject', subject,
                              'tags', coalesce(tags, '{}'))
$$;

CREATE FUNCTION dispatcher.webhook_suppressions_inserted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM dispatcher.webhook_endpoints
                   WHERE 'unsubscribed' = ANY (events)) THEN
        RETURN NULL;
    END IF;
    INSERT INTO dispatcher.webhook_deliveries (endpoint_id, type, message_id, data)
    SELECT e.id, 'unsubscribed', NULL,
           jsonb_build_object('address', s.address, 'reason', s.reason,
                              'suppressed_at', dispatcher.webhook_time(s.created_at))
    FROM new_suppressions s
    CROSS JOIN dispatcher.webhook_endpoints e
    WHERE 'unsubscribed' = ANY (e.events) AND s.reason ~* 'unsubscri'
    ORDER BY s.address, e.id;
    RETURN NULL;
END
$$;

CREATE FUNCTION dispatcher.webhook_time(t timestamp with time zone) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE TABLE dispatcher.accounts (
    name text NOT NULL,
    "position" integer NOT NULL,
    paused_at timestamp with time zone,
    paused_reason text
);

CREATE TABLE dispatcher.api_keys (
    id text NOT NULL,
    name text NOT NULL,
    secret_sha256 bytea NOT NULL,
    senders text[] DEFAULT '{}'::text[] NOT NULL,
    max_priority smallint,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    revoked_at timestamp with time zone
);

CREATE TABLE dispatcher.campaign_pruned (
    campaign_id bigint NOT NULL,
    state dispatcher.job_state NOT NULL,
    outcome text DEFAULT ''::text NOT NULL,
    messages bigint DEFAULT 0 NOT NULL,
    recipients bigint DEFAULT 0 NOT NULL,
    delivered bigint DEFAULT 0 NOT NULL,
    bounced bigint DEFAULT 0 NOT NULL,
    bounced_any bigint DEFAULT 0 NOT NULL,
    complained bigint DEFAULT 0 NOT NULL
);

CREATE TABLE dispatcher.campaign_recipients (
    campaign_id bigint NOT NULL,
    line integer NOT NULL,
    email text NOT NULL,
    variables text NOT NULL
);

CREATE TABLE dispatcher.campaigns (
    id bigint NOT NULL,
    name text NOT NULL,
    state dispatcher.campaign_state DEFAULT 'draft'::dispatcher.campaign_state NOT NULL,
    from_addr text NOT NULL,
    reply_to text[] DEFAULT '{}'::text[] NOT NULL,
    configuration_set text,
    tags jsonb DEFAULT '{}'::jsonb NOT NULL,
    subject text NOT NULL,
    html text NOT NULL,
    text_body text,
    unsubscribe_url text,
    send_at timestamp with time zone,
    priority smallint DEFAULT '-10'::integer NOT NULL,
    recipients integer DEFAULT 0 NOT NULL,
    pause_reason text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    mode text DEFAULT 'render'::text NOT NULL,
    send_window text,
    window_timezone text,
    timezone_column text,
    contact_list text,
    contact_topic text,
    variable_columns text[] DEFAULT '{}'::text[] NOT NULL,
    unmaterialised integer DEFAULT 0 NOT NULL,
    CONSTRAINT campaigns_mode_check CHECK ((mode = ANY (ARRAY['render'::text, 'ses_template'::text])))
);

CREATE SEQUENCE dispatcher.campaigns_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE dispatcher.campaigns_id_seq OWNED BY dispatcher.campaigns.id;

CREATE TABLE dispatcher.events (
    id bigint NOT NULL,
    sns_message_id text NOT NULL,
    topic_arn text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    kind text NOT NULL,
    event_type text,
    ses_message_id text,
    message_id bigint,
    occurred_at timestamp with time zone,
    raw jsonb NOT NULL,
    parsed jsonb,
    processed_at timestamp with time zone
);

CREATE SEQUENCE dispatcher.events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE dispatcher.events_id_seq OWNED BY dispatcher.events.id;

CREATE TABLE dispatcher.jobs (
    id bigint NOT NULL,
    state dispatcher.job_state DEFAULT 'queued'::dispatcher.job_state NOT NULL,
    priority smallint DEFAULT 0 NOT NULL,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    recipients smallint NOT NULL,
    attempts smallint DEFAULT 0 NOT NULL,
    scheduled boolean DEFAULT false NOT NULL,
    lease_owner uuid,
    lease_token bigint,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    sent_at timestamp with time zone,
    ses_message_id text,
    last_outcome text,
    last_error text,
    campaign_id bigint,
    account text DEFAULT 'default'::text NOT NULL,
    fallback text
)
WITH (fillfactor='80', autovacuum_vacuum_scale_factor='0.02', autovacuum_analyze_scale_factor='0.02');

CREATE SEQUENCE dispatcher.lease_token_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

CREATE TABLE dispatcher.message_feedback (
    message_id bigint NOT NULL,
    campaign_id bigint,
    delivered integer DEFAULT 0 NOT NULL,
    bounced integer DEFAULT 0 NOT NULL,
    complained integer DEFAULT 0 NOT NULL,
    last_event_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE SEQUENCE dispatcher.message_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

CREATE TABLE dispatcher.messages (
    id bigint DEFAULT nextval('dispatcher.message_id_seq'::regclass) NOT NULL,
    idempotency_key text,
    from_addr text NOT NULL,
    to_addrs text[] DEFAULT '{}'::text[] NOT NULL,
    cc_addrs text[] DEFAULT '{}'::text[] NOT NULL,
    bcc_addrs text[] DEFAULT '{}'::text[] NOT NULL,
    reply_to text[] DEFAULT '{}'::text[] NOT NULL,
    subject text DEFAULT ''::text NOT NULL,
    text_body text,
    html_body text,
    raw bytea,
    configuration_set text,
    tags jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    campaign_id bigint,
    variables jsonb,
    key_id text,
    template_name text,
    template_data text,
    content_pruned_at timestamp with time zone
)
WITH (autovacuum_vacuum_scale_factor='0.02', autovacuum_analyze_scale_factor='0.02');

CREATE TABLE dispatcher.quota_spend (
    owner uuid NOT NULL,
    epoch bigint NOT NULL,
    sent double precision NOT NULL,
    account text DEFAULT 'default'::text NOT NULL
);

CREATE TABLE dispatcher.recipient_events (
    event_id bigint NOT NULL,
    address text NOT NULL,
    kind text NOT NULL,
    bounce_type text,
    bounce_subtype text,
    status text,
    diagnostic text,
    occurred_at timestamp with time zone NOT NULL
);

CREATE TABLE dispatcher.retention_marks (
    state dispatcher.job_state NOT NULL,
    content_done_until timestamp with time zone NOT NULL
);

CREATE TABLE dispatcher.routes (
    "position" integer NOT NULL,
    from_domains text[] DEFAULT '{}'::text[] NOT NULL,
    campaigns text[] DEFAULT '{}'::text[] NOT NULL,
    key_names text[] DEFAULT '{}'::text[] NOT NULL,
    tags text[] DEFAULT '{}'::text[] NOT NULL,
    account text NOT NULL,
    fallback text
);

CREATE TABLE dispatcher.send_quota (
    epoch bigint DEFAULT 0 NOT NULL,
    polling_epoch bigint DEFAULT 0 NOT NULL,
    max_24_hour_send double precision,
    max_send_rate double precision,
    sent_last_24_hours double precision,
    read_at timestamp with time zone,
    leader uuid,
    account text DEFAULT 'default'::text NOT NULL
);

CREATE TABLE dispatcher.sending_hold (
    reason text NOT NULL,
    held_at timestamp with time zone DEFAULT now() NOT NULL,
    account text DEFAULT 'default'::text NOT NULL
);

CREATE TABLE dispatcher.suppressions (
    address text NOT NULL,
    reason text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE SEQUENCE dispatcher.webhook_order_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

CREATE TABLE dispatcher.warmup_days (
    day date NOT NULL,
    taken double precision DEFAULT 0 NOT NULL,
    held_reason text,
    held_at timestamp with time zone,
    account text DEFAULT 'default'::text NOT NULL
);

CREATE TABLE dispatcher.webhook_deliveries (
    id bigint NOT NULL,
    endpoint_id integer NOT NULL,
    type text NOT NULL,
    message_id bigint,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    data jsonb NOT NULL,
    seq bigint DEFAULT nextval('dispatcher.webhook_order_seq'::regclass),
    state text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_at timestamp with time zone DEFAULT now() NOT NULL,
    lease_until timestamp with time zone,
    last_error text,
    done_at timestamp with time zone,
    CONSTRAINT webhook_deliveries_state_check CHECK ((state = ANY (ARRAY['pending'::text, 'delivered'::text, 'given_up'::text])))
);

CREATE SEQUENCE dispatcher.webhook_deliveries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE dispatcher.webhook_deliveries_id_seq OWNED BY dispatcher.webhook_deliveries.id;

CREATE TABLE dispatcher.webhook_endpoints (
    id integer NOT NULL,
    url text NOT NULL,
    events text[] DEFAULT '{}'::text[] NOT NULL,
    synced_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE SEQUENCE dispatcher.webhook_endpoints_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE dispatcher.webhook_endpoints_id_seq OWNED BY dispatcher.webhook_endpoints.id;

CREATE TABLE dispatcher.workers (
    id uuid NOT NULL,
    hostname text NOT NULL,
    pid integer NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    heartbeat_at timestamp with time zone DEFAULT now() NOT NULL,
    lease_seconds real NOT NULL,
    active_until timestamp with time zone,
    account text DEFAULT 'default'::text NOT NULL
);

ALTER TABLE ONLY dispatcher.campaigns ALTER COLUMN id SET DEFAULT nextval('dispatcher.campaigns_id_seq'::regclass);

ALTER TABLE ONLY dispatcher.events ALTER COLUMN id SET DEFAULT nextval('dispatcher.events_id_seq'::regclass);

ALTER TABLE ONLY dispatcher.webhook_deliveries ALTER COLUMN id SET DEFAULT nextval('dispatcher.webhook_deliveries_id_seq'::regclass);

ALTER TABLE ONLY dispatcher.webhook_endpoints ALTER COLUMN id SET DEFAULT nextval('dispatcher.webhook_endpoints_id_seq'::regclass);

ALTER TABLE ONLY dispatcher.campaign_pruned
    ADD CONSTRAINT campaign_pruned_pkey PRIMARY KEY (campaign_id, state, outcome);

ALTER TABLE ONLY dispatcher.campaign_recipients
    ADD CONSTRAINT campaign_recipients_pkey PRIMARY KEY (campaign_id, line);

ALTER TABLE ONLY dispatcher.campaigns
    ADD CONSTRAINT campaigns_pkey PRIMARY KEY (id);

ALTER TABLE ONLY dispatcher.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY dispatcher.events
    ADD CONSTRAINT events_sns_message_id_key UNIQUE (sns_message_id);

ALTER TABLE ONLY dispatcher.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY dispatcher.message_feedback
    ADD CONSTRAINT message_feedback_pkey PRIMARY KEY (message_id);

ALTER TABLE ONLY dispatcher.accounts
    ADD CONSTRAINT accounts_pkey PRIMARY KEY (name);

ALTER TABLE ONLY dispatcher.api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id);

ALTER TABLE ONLY dispatcher.messages
    ADD CONSTRAINT messages_idempotency_key_key UNIQUE (idempotency_key);

ALTER TABLE ONLY dispatcher.messages
    ADD CONSTRAINT messages_pkey PRIMARY KEY (id);

ALTER TABLE ONLY dispatcher.quota_spend
    ADD CONSTRAINT quota_spend_pkey PRIMARY KEY (owner, epoch);

ALTER TABLE ONLY dispatcher.recipient_events
    ADD CONSTRAINT recipient_events_pkey PRIMARY KEY (event_id, address);

ALTER TABLE ONLY dispatcher.retention_marks
    ADD CONSTRAINT retention_marks_pkey PRIMARY KEY (state);

ALTER TABLE ONLY dispatcher.warmup_days
    ADD CONSTRAINT warmup_days_pkey PRIMARY KEY (account, day);

ALTER TABLE ONLY dispatcher.routes
    ADD CONSTRAINT routes_pkey PRIMARY KEY ("position");

ALTER TABLE ONLY dispatcher.send_quota
    ADD CONSTRAINT send_quota_pkey PRIMARY KEY (account);

ALTER TABLE ONLY dispatcher.sending_hold
    ADD CONSTRAINT sending_hold_pkey PRIMARY KEY (account);

ALTER TABLE ONLY dispatcher.suppressions
    ADD CONSTRAINT suppressions_pkey PRIMARY KEY (address);

ALTER TABLE ONLY dispatcher.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id);

ALTER TABLE ONLY dispatcher.webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_pkey PRIMARY KEY (id);

ALTER TABLE ONLY dispatcher.webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_url_key UNIQUE (url);

ALTER TABLE ONLY dispatcher.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id);

CREATE INDEX events_message ON dispatcher.events USING btree (message_id) WHERE (message_id IS NOT NULL);

CREATE INDEX events_ses_message ON dispatcher.events USING btree (ses_message_id);

CREATE INDEX events_untied_age ON dispatcher.events USING btree (received_at) WHERE (message_id IS NULL);

CREATE INDEX events_unlinked ON dispatcher.events USING btree (received_at) WHERE ((message_id IS NULL) AND (ses_message_id IS NOT NULL));

CREATE INDEX events_unprocessed ON dispatcher.events USING btree (id) WHERE (processed_at IS NULL);

CREATE INDEX jobs_campaign ON dispatcher.jobs USING btree (campaign_id, state, priority DESC, run_at, id) WHERE (campaign_id IS NOT NULL);

CREATE INDEX jobs_finished ON dispatcher.jobs USING btree (state, updated_at) WHERE (state = ANY (ARRAY['failed'::dispatcher.job_state, 'cancelled'::dispatcher.job_state]));

CREATE INDEX jobs_leased ON dispatcher.jobs USING btree (lease_owner) WHERE (state = ANY (ARRAY['claimed'::dispatcher.job_state, 'in_flight'::dispatcher.job_state]));

CREATE INDEX jobs_ready_campaign ON dispatcher.jobs USING btree (account, campaign_id, priority DESC, run_at, id) WHERE ((state = 'queued'::dispatcher.job_state) AND (campaign_id IS NOT NULL));

CREATE INDEX jobs_ready_plain ON dispatcher.jobs USING btree (account, priority DESC, run_at, id) WHERE ((state = 'queued'::dispatcher.job_state) AND (campaign_id IS NULL));

CREATE INDEX jobs_sent_at ON dispatcher.jobs USING btree (sent_at) WHERE (state = 'sent'::dispatcher.job_state);

CREATE INDEX jobs_ses_message ON dispatcher.jobs USING btree (ses_message_id) WHERE (ses_message_id IS NOT NULL);

CREATE INDEX jobs_unknown ON dispatcher.jobs USING btree (id) WHERE (state = 'unknown'::dispatcher.job_state);

CREATE INDEX message_feedback_campaign ON dispatcher.message_feedback USING btree (campaign_id) WHERE (campaign_id IS NOT NULL);

CREATE INDEX recipient_events_address ON dispatcher.recipient_events USING btree (address, occurred_at);

CREATE INDEX recipient_events_kind_time ON dispatcher.recipient_events USING btree (kind, occurred_at);

CREATE INDEX webhook_deliveries_chain ON dispatcher.webhook_deliveries USING btree (endpoint_id, message_id, seq) WHERE (state = 'pending'::text);

CREATE INDEX webhook_deliveries_done ON dispatcher.webhook_deliveries USING btree (done_at) WHERE (state <> 'pending'::text);

CREATE INDEX webhook_deliveries_due ON dispatcher.webhook_deliveries USING btree (endpoint_id, next_at) WHERE (state = 'pending'::text);

CREATE INDEX webhook_deliveries_unordered ON dispatcher.webhook_deliveries USING btree (id) WHERE (seq IS NULL);

CREATE TRIGGER jobs_inserted AFTER INSERT ON dispatcher.jobs FOR EACH STATEMENT EXECUTE FUNCTION dispatcher.notify_jobs();

CREATE TRIGGER jobs_route BEFORE INSERT ON dispatcher.jobs FOR EACH ROW EXECUTE FUNCTION dispatcher.route_job();

ALTER TABLE dispatcher.jobs DISABLE TRIGGER jobs_route;

CREATE TRIGGER webhook_events_updated AFTER UPDATE ON dispatcher.events REFERENCING OLD TABLE AS old_events NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION dispatcher.webhook_events_updated();

CREATE TRIGGER webhook_jobs_inserted AFTER INSERT ON dispatcher.jobs REFERENCING NEW TABLE AS new_jobs FOR EACH STATEMENT EXECUTE FUNCTION dispatcher.webhook_jobs_inserted();

CREATE TRIGGER webhook_jobs_updated AFTER UPDATE ON dispatcher.jobs REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs FOR EACH STATEMENT EXECUTE FUNCTION dispatcher.webhook_jobs_updated();

CREATE TRIGGER webhook_suppressions_inserted AFTER INSERT ON dispatcher.suppressions REFERENCING NEW TABLE AS new_suppressions FOR EACH STATEMENT EXECUTE FUNCTION dispatcher.webhook_suppressions_inserted();

ALTER TABLE ONLY dispatcher.campaign_pruned
    ADD CONSTRAINT campaign_pruned_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES dispatcher.campaigns(id) ON DELETE CASCADE;

ALTER TABLE ONLY dispatcher.messages
    ADD CONSTRAINT messages_key_id_fkey FOREIGN KEY (key_id) REFERENCES dispatcher.api_keys(id);

ALTER TABLE ONLY dispatcher.recipient_events
    ADD CONSTRAINT recipient_events_event_id_fkey FOREIGN KEY (event_id) REFERENCES dispatcher.events(id) ON DELETE CASCADE;

ALTER TABLE ONLY dispatcher.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES dispatcher.webhook_endpoints(id) ON DELETE CASCADE;

-- Provider lanes (migration 0020).
CREATE TABLE dispatcher.lane_days (
    account text DEFAULT 'default'::text NOT NULL,
    provider text NOT NULL,
    day date NOT NULL,
    taken double precision DEFAULT 0 NOT NULL,
    sent bigint DEFAULT 0 NOT NULL,
    PRIMARY KEY (account, provider, day)
);

CREATE TABLE dispatcher.lane_backoffs (
    account text DEFAULT 'default'::text NOT NULL,
    provider text NOT NULL,
    reason text NOT NULL,
    since timestamp with time zone NOT NULL,
    last_burst timestamp with time zone NOT NULL,
    PRIMARY KEY (account, provider)
);

CREATE TABLE dispatcher.mx_cache (
    domain text NOT NULL PRIMARY KEY,
    provider text NOT NULL,
    mx text[] NOT NULL,
    looked_up_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

CREATE INDEX recipient_events_soft ON dispatcher.recipient_events USING btree (occurred_at) WHERE ((kind = 'bounce'::text) AND (bounce_type = 'Transient'::text));

CREATE INDEX events_delays ON dispatcher.events USING btree (received_at) WHERE (kind = 'delivery_delay'::text);

-- The reputation guard's counters (migration 0025).
CREATE TABLE dispatcher.guard_account_tally (
    bucket timestamp with time zone NOT NULL,
    account text NOT NULL,
    shard smallint NOT NULL,
    sent bigint DEFAULT 0 NOT NULL,
    bounced bigint DEFAULT 0 NOT NULL,
    complained bigint DEFAULT 0 NOT NULL,
    delivered bigint DEFAULT 0 NOT NULL,
    bounced_any bigint DEFAULT 0 NOT NULL,
    PRIMARY KEY (bucket, account, shard)
);

CREATE INDEX guard_account_tally_unfolded ON dispatcher.guard_account_tally USING btree (bucket) WHERE (shard <> 0);

CREATE TABLE dispatcher.guard_campaign_tally (
    campaign_id bigint NOT NULL,
    shard smallint NOT NULL,
    sent bigint DEFAULT 0 NOT NULL,
    delivered bigint DEFAULT 0 NOT NULL,
    bounced bigint DEFAULT 0 NOT NULL,
    bounced_any bigint DEFAULT 0 NOT NULL,
    complained bigint DEFAULT 0 NOT NULL,
    PRIMARY KEY (campaign_id, shard)
);

CREATE FUNCTION dispatcher.minute_of(t timestamptz) RETURNS timestamptz
    LANGUAGE sql STABLE
    AS $$
SELECT to_timestamp(floor(extract(epoch FROM t) / 60) * 60)
$$;

CREATE FUNCTION dispatcher.tally_shard() RETURNS smallint
    LANGUAGE sql STABLE
    AS $$
SELECT (pg_backend_pid() % 16)::smallint
$$;
