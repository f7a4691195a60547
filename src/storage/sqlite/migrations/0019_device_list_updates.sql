-- This server's users' device updates as other servers see them
-- (server-server API, "Device Management"): per device (deleted ones
-- included), the stream id of its last update (a misc stream position),
-- the stream id of the user's update before it (`prev_id`, NULL for the
-- first), and `change_position`, the device list change (the write) it
-- belongs to. The largest stream id of a user heads their stream:
-- `/user/devices` answers it and the next update names it as `prev_id`.
CREATE TABLE device_list_updates (
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    stream_id       INTEGER NOT NULL,
    prev_id         INTEGER,
    change_position INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE INDEX device_list_updates_by_change ON device_list_updates(user_id, change_position);

-- The cross-signing keys of a remote user, as their server last listed
-- them, beside the devices (`/keys/query` answers from both).
ALTER TABLE remote_device_lists ADD COLUMN master_key TEXT;
ALTER TABLE remote_device_lists ADD COLUMN self_signing_key TEXT;
