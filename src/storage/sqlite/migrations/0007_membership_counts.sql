-- Room summaries count a room's members by membership and list the first
-- few: an index range instead of a pass over every member of the room.
CREATE INDEX room_memberships_by_room ON room_memberships(room_id, membership, user_id);
