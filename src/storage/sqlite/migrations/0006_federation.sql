-- Federation: other servers' signing keys, the outbound queue and the
-- transactions received.

-- Verify keys of other servers, as fetched (directly or through a notary)
-- and checked. `valid_until_ts` is when a key must be refetched; an old key
-- (`expired_ts` set) still verifies events signed before that time.
CREATE TABLE server_keys (
    server_name    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    valid_until_ts INTEGER NOT NULL,
    expired_ts     INTEGER,
    fetched_ts     INTEGER NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- What each destination still has to receive, in order. `kind` is 'pdu' or
-- 'edu'; `json` the PDU or EDU as sent.
CREATE TABLE federation_queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    kind        TEXT NOT NULL,
    json        TEXT NOT NULL
);
CREATE INDEX federation_queue_by_destination ON federation_queue(destination, id);

-- The transaction in flight to a destination: after a restart the same
-- items go out again under the same transaction id.
CREATE TABLE federation_txn_out (
    destination TEXT PRIMARY KEY,
    txn_id      TEXT NOT NULL,
    last_id     INTEGER NOT NULL
);

-- Transactions received, so a retried one is not applied twice.
CREATE TABLE federation_txn_in (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
);

-- Invites of local users to rooms on other servers this server is not in:
-- the stripped state the inviting server sent, shown in sync, and the
-- servers to join (or decline) through.
CREATE TABLE remote_invites (
    room_id        TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    room_version   TEXT NOT NULL,
    stripped_state TEXT NOT NULL,  -- JSON array of {type, state_key, sender, content}
    via            TEXT NOT NULL,  -- JSON array of server names
    PRIMARY KEY (room_id, user_id)
);
