-- Automatic blocking and key rotation (issue 18): the back end's settings (the blacklist
-- policy), each terminal's key generations (offered, then installed) and the cards
-- terminals blocked on their own, with the operator's decision on each.
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS key_generations (
    tid TEXT NOT NULL,
    generation BIGINT NOT NULL,
    ik_id BYTEA NOT NULL,
    offered BIGINT NOT NULL,
    installed BIGINT,
    PRIMARY KEY (tid, generation)
);
CREATE TABLE IF NOT EXISTS auto_blocks (
    tid TEXT NOT NULL,
    counter BIGINT NOT NULL,
    token BYTEA NOT NULL,
    lifted BIGINT NOT NULL,
    status TEXT NOT NULL,
    blacklist_version BIGINT,
    decided BIGINT,
    PRIMARY KEY (tid, counter)
);
