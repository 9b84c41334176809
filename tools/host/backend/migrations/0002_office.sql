-- The back office's tables (tools/host/backend/office/store.py says what each holds).
-- The office only reads the ledger's tables; these are its own.
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    merchant_id TEXT,
    password_hash TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL
);
-- digest: SHA-256 of the session cookie (the cookie itself is never stored).
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    started BIGINT NOT NULL,
    seen BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    user_name TEXT NOT NULL,
    address TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_by_time ON login_failures (at);
-- seq: the order things were done (taken in the entry's own transaction).
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
-- effective: a local date, 2026-11-29 (ISO dates order as text).
CREATE TABLE IF NOT EXISTS commission (
    merchant_id TEXT NOT NULL,
    effective TEXT NOT NULL,
    basis_points BIGINT NOT NULL,
    fixed_minor BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, effective)
);
CREATE TABLE IF NOT EXISTS payees (
    merchant_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    iban TEXT NOT NULL,
    bic TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS office_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
