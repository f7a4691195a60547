-- What this server knows of the device lists of users of other servers
-- (server-server API, "Device Management"): the stream id of the last
-- update applied, and the devices as their server last listed them
-- (`GET /user/devices`, then `m.device_list_update` EDUs). A user with no
-- row, or an update whose `prev_id` does not name the stored stream id,
-- makes this server ask for the whole list again.
CREATE TABLE remote_device_lists (
    user_id   TEXT PRIMARY KEY,
    stream_id INTEGER NOT NULL,
    -- JSON object: device id -> the device as `/user/devices` lists it.
    devices   TEXT NOT NULL
);
