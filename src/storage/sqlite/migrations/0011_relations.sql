-- Relations between events (m.relates_to with a rel_type), one row per
-- relating timeline event, written with the event.
CREATE TABLE event_relations (
    event_id        TEXT PRIMARY KEY,
    room_id         TEXT NOT NULL,
    relates_to      TEXT NOT NULL,
    rel_type        TEXT NOT NULL,
    type            TEXT NOT NULL,
    sender          TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL
);
CREATE INDEX event_relations_by_parent ON event_relations(relates_to, rel_type, stream_ordering);
CREATE INDEX event_relations_by_room ON event_relations(room_id, rel_type, stream_ordering);

INSERT OR IGNORE INTO event_relations (event_id, room_id, relates_to, rel_type, type, sender, stream_ordering)
SELECT event_id, room_id, json_extract(json, '$.content."m.relates_to".event_id'),
       json_extract(json, '$.content."m.relates_to".rel_type'), type, sender, stream_ordering
FROM events
WHERE outlier = 0
  AND json_type(json, '$.content."m.relates_to".rel_type') = 'text'
  AND json_type(json, '$.content."m.relates_to".event_id') = 'text';
