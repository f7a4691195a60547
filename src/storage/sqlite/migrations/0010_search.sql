-- The full-text index of room events (server-side search): one row per
-- event with text under `content.body`, `content.name` or `content.topic`,
-- its rowid the event's stream_ordering. `unicode61 remove_diacritics 2`
-- folds case and accents, so "cafe" finds "Café".
CREATE VIRTUAL TABLE event_search USING fts5(
    body, name, topic,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Events stored before this migration: the search listener indexes the
-- ones that come after.
INSERT INTO event_search (rowid, body, name, topic)
SELECT stream_ordering,
       CASE WHEN json_type(json, '$.content.body') = 'text' THEN json_extract(json, '$.content.body') END,
       CASE WHEN json_type(json, '$.content.name') = 'text' THEN json_extract(json, '$.content.name') END,
       CASE WHEN json_type(json, '$.content.topic') = 'text' THEN json_extract(json, '$.content.topic') END
FROM events
WHERE outlier = 0 AND rejected = 0 AND redacted_by IS NULL
  AND (json_type(json, '$.content.body') = 'text'
       OR json_type(json, '$.content.name') = 'text'
       OR json_type(json, '$.content.topic') = 'text');
