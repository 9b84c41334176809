-- Signed software updates (issue 15): each release's signed image, the lowest version it may
-- replace, who it is offered to (percent, or a comma-separated list of terminals; NULL: all)
-- and when it was stopped (NULL: still offered).
CREATE TABLE IF NOT EXISTS releases (
    version BIGINT PRIMARY KEY,
    min_version BIGINT NOT NULL,
    file BYTEA NOT NULL,
    sha256 BYTEA NOT NULL,
    percent BIGINT NOT NULL,
    terminals TEXT,
    stopped BIGINT,
    created BIGINT NOT NULL
);
