-- Version 1: mailboxes, messages and their bodies in chunks.
--
-- Every table's key starts with the mailbox id, so that every row of one user lives under one
-- key prefix: the schema can later be sharded (or partitioned) by mailbox without a query ever
-- spanning two shards. No global sequence numbers messages: each mailbox hands out its own.

CREATE TABLE mailboxes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The login name (RFC 1939 §7 USER), as the users file spells it.
    user_name text NOT NULL UNIQUE CHECK (user_name <> ''),
    -- The id the next delivered message gets (per mailbox: no cross-shard sequence).
    next_message_id bigint NOT NULL DEFAULT 1 CHECK (next_message_id >= 1),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    id bigint NOT NULL CHECK (id >= 1),
    -- RFC 1939 §7 UIDL: 1 to 70 characters in the range 0x21 to 0x7E, unique in the maildrop.
    uidl text NOT NULL CHECK (uidl ~ '^[!-~]{1,70}$'),
    -- The exact RFC 1939 size in octets: what RETR sends, CRLF line ends, before dot-stuffing.
    size bigint NOT NULL CHECK (size >= 0),
    delivered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, id),
    UNIQUE (mailbox_id, uidl)
);

CREATE TABLE message_chunks (
    mailbox_id bigint NOT NULL,
    message_id bigint NOT NULL,
    -- 0, 1, 2...: the body is the concatenation of its chunks in this order.
    seq integer NOT NULL CHECK (seq >= 0),
    bytes bytea NOT NULL,
    PRIMARY KEY (mailbox_id, message_id, seq),
    FOREIGN KEY (mailbox_id, message_id) REFERENCES messages (mailbox_id, id) ON DELETE CASCADE
);
