-- The audit log consumer's table: one row per event, whatever happens to other consumers.
CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      TEXT    NOT NULL UNIQUE,
    event_type    TEXT    NOT NULL,
    event_version INTEGER NOT NULL,
    user_id       INTEGER NOT NULL,
    occurred_at   TEXT    NOT NULL,
    recorded_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
