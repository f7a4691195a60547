-- The outbound queue of application services (application service API,
-- "Pushing events"): what each appservice still has to be sent, oldest
-- first. `kind` is `event` (a timeline event in the client format) or
-- `ephemeral` (typing, receipts); `json` is the item as sent.
-- `txn_id` is set when the item joins a transaction: a transaction is
-- resent with the same id and the same items until the appservice
-- acknowledges it, also after a restart. AUTOINCREMENT: ids (and so
-- transaction ids, the id of a transaction's first item) are never reused.
CREATE TABLE appservice_queue (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    appservice_id TEXT NOT NULL,
    kind          TEXT NOT NULL,
    json          TEXT NOT NULL,
    txn_id        INTEGER
);
CREATE INDEX appservice_queue_by_service ON appservice_queue(appservice_id, id);
