-- Delayed events (MSC4140): scheduled events and, for a while after, how
-- they ended.
CREATE TABLE delayed_events (
    delay_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    -- The client's transaction id (message events only).
    txn_id TEXT,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    content TEXT NOT NULL,
    delay_ms INTEGER NOT NULL,
    running_since INTEGER NOT NULL,
    send_ts INTEGER NOT NULL,
    -- 'scheduled', 'sending', 'sent', 'cancelled' or 'failed'.
    status TEXT NOT NULL,
    -- Once finalised: 'action', 'delay' or 'error'.
    reason TEXT,
    event_id TEXT,
    error TEXT,
    finalised_ts INTEGER
);
CREATE UNIQUE INDEX delayed_events_txn ON delayed_events (user_id, device_id, txn_id) WHERE txn_id IS NOT NULL;
CREATE INDEX delayed_events_user ON delayed_events (user_id, status);
CREATE INDEX delayed_events_due ON delayed_events (send_ts) WHERE status = 'scheduled';
CREATE INDEX delayed_events_state ON delayed_events (room_id, type, state_key) WHERE status = 'scheduled';
CREATE INDEX delayed_events_finalised ON delayed_events (finalised_ts) WHERE finalised_ts IS NOT NULL;
