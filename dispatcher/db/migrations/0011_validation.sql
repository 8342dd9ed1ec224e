-- Issue 13: one rule for what a valid message is, at every door.
--
-- 1. Suppressions are keyed on the bare address, lower-cased (dispatcher.domain.validate's
--    suppression_key): a row stored as 'Jane <jane@example.com>' or ' jane@example.com ' becomes
--    'jane@example.com'; of two rows that now share a key the older one stays. SQL has no IDNA:
--    a row with a non-ASCII domain (only ever typed by hand) keeps its form; remove it and add it
--    again with `dispatcher suppression` to key it in punycode.
-- 2. dispatcher.enqueue() applies the Python validator's rules as far as SQL can, and stores
--    addresses in the same normalised form (see dispatcher.normalize_mailbox).

CREATE TEMP TABLE suppression_rekey ON COMMIT DROP AS
SELECT DISTINCT ON (key) key, reason, created_at
FROM (SELECT lower(btrim(coalesce(substring(btrim(address) FROM '<([^<>]*)>$'), address)))
                 AS key,
             reason, created_at
      FROM dispatcher.suppressions) s
WHERE key <> ''
ORDER BY key, created_at;
DELETE FROM dispatcher.suppressions;
INSERT INTO dispatcher.suppressions (address, reason, created_at)
SELECT key, reason, created_at FROM suppression_rekey;

-- One address, with or without a display name, in the form the Python validator stores:
-- '"Jane Doe" <jane@example.com>' or 'jane@example.com', the domain lower-cased. Stricter than
-- Python where SQL cannot do what Python does: a non-ASCII domain (IDNA) or display name (RFC
-- 2047) is refused with a hint instead of converted.
CREATE FUNCTION dispatcher.normalize_mailbox(field text, given text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
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
$$;

CREATE FUNCTION dispatcher.normalize_mailboxes(field text, given text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(dispatcher.normalize_mailbox(field || '[' || (n - 1) || ']', a)
                              ORDER BY n), '{}')
    FROM unnest(coalesce(given, '{}')) WITH ORDINALITY AS t(a, n)
$$;

CREATE OR REPLACE FUNCTION dispatcher.enqueue(
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
$$;
