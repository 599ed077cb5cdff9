-- The signup coupon consumer's table: one unique code per user, and when it was mailed.
CREATE TABLE coupons (
    user_id   INTEGER PRIMARY KEY REFERENCES users (id),
    code      TEXT    NOT NULL UNIQUE,
    issued_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    mailed_at TEXT
);
