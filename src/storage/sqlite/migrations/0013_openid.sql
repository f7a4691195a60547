-- OpenID tokens (client-server API, "OpenID"): a user hands one to a third
-- party (a widget, a LiveKit JWT service), which asks the federation API's
-- /openid/userinfo whose it is. Stored only as SHA-256 hashes; rows past
-- their expiry are deleted by the next token's write.
CREATE TABLE openid_tokens (
    token_hash BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(user_id),
    expires_ts INTEGER NOT NULL
);

CREATE INDEX openid_tokens_by_expiry ON openid_tokens (expires_ts);
