-- The ledger as it stood when migrations began: terminals, their records and quarantine,
-- heartbeats, the downlink (configs, blacklist, commands) and fault logs.
-- Written in what SQLite and PostgreSQL both take: BIGINT (counters and times reach
-- 2^32), TEXT, BYTEA (SQLite keeps the bytes as they are). IF NOT EXISTS: a SQLite ledger
-- made before migrations existed takes this file over the tables it has.
CREATE TABLE IF NOT EXISTS terminals (
    tid TEXT PRIMARY KEY,
    ik_id BYTEA NOT NULL,
    ack BIGINT NOT NULL DEFAULT 0,
    registered BIGINT NOT NULL,
    nonce BIGINT NOT NULL DEFAULT 0,
    quarantine_dropped BIGINT NOT NULL DEFAULT 0,
    faults_dropped BIGINT NOT NULL DEFAULT 0,
    suspected TEXT
);
CREATE TABLE IF NOT EXISTS merchants (
    tid TEXT NOT NULL,
    number BIGINT NOT NULL,
    merchant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (tid, number)
);
-- Exactly-once: one record per (terminal, counter), whichever worker or host stores it.
CREATE TABLE IF NOT EXISTS records (
    tid TEXT NOT NULL,
    counter BIGINT NOT NULL,
    kind BIGINT NOT NULL,
    merchant BIGINT NOT NULL,
    method BIGINT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency BIGINT NOT NULL,
    time BIGINT NOT NULL,
    receipt BIGINT NOT NULL,
    reference BIGINT NOT NULL,
    cashier BIGINT NOT NULL,
    reason BIGINT NOT NULL,
    flags BIGINT NOT NULL,
    token BYTEA NOT NULL,
    last_four BIGINT NOT NULL,
    frame BYTEA NOT NULL,
    received BIGINT NOT NULL,
    PRIMARY KEY (tid, counter)
);
CREATE TABLE IF NOT EXISTS heartbeats (
    tid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    received BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    tid TEXT NOT NULL,
    counter BIGINT NOT NULL,
    frame BYTEA NOT NULL,
    reason TEXT NOT NULL,
    received BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_by_terminal ON quarantine (tid, counter);
CREATE TABLE IF NOT EXISTS configs (
    tid TEXT NOT NULL,
    version BIGINT NOT NULL,
    payload TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (tid, version)
);
CREATE TABLE IF NOT EXISTS blacklist (
    token BYTEA PRIMARY KEY,
    added BIGINT NOT NULL,
    removed BIGINT
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    tid TEXT NOT NULL,
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (tid, id)
);
-- seq: the order a terminal's fault logs came in (per terminal, from 1).
CREATE TABLE IF NOT EXISTS faults (
    tid TEXT NOT NULL,
    text TEXT NOT NULL,
    received BIGINT NOT NULL,
    seq BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS faults_by_terminal ON faults (tid, seq);
