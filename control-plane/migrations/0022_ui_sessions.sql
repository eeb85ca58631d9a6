-- Web console sessions (issue 27): a signed-in browser holds the cookie
-- `<id>.<secret>`; only a BLAKE3 hash of the secret is stored (the secret is
-- 192 random bits, so a fast hash is enough, unlike passwords). `csrf` is the
-- session's anti-forgery token, required in every form the console posts.
CREATE TABLE ui_sessions (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    csrf TEXT NOT NULL,
    -- Unix seconds; a session is valid in [created_at, expires_at).
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
