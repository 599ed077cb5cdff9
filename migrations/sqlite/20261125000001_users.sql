-- Registered users. `email` keeps what the visitor typed (trimmed); `email_key` is its lower-case
-- form, so the same address in another case is a duplicate.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL,
    email_key     TEXT    NOT NULL UNIQUE,
    name          TEXT,
    password_hash TEXT    NOT NULL,
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- One row per user whose welcome mail was handed to the SMTP server. A job that finds the row
-- sends nothing: a re-delivered or re-run job cannot mail twice (outside the window between the
-- SMTP server's acceptance and this INSERT).
CREATE TABLE welcome_deliveries (
    user_id      INTEGER PRIMARY KEY REFERENCES users (id),
    message_id   TEXT    NOT NULL,
    mode         TEXT    NOT NULL CHECK (mode IN ('sync', 'async')),
    job_id       TEXT,
    delivered_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
