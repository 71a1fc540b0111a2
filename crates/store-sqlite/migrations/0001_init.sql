-- Flotilla store, schema version 1.
--
-- Applied by SqliteStore::open inside one transaction together with `PRAGMA user_version = 1`.
-- Tables are STRICT so a value of the wrong type can never be stored. The group column is called
-- `group_name` because GROUP is an SQL keyword. Kinds and states are plain TEXT without CHECK
-- constraints on purpose: a row written by a newer binary must be readable as "unknown kind" (an
-- error naming the row), not rejected at insert time.

CREATE TABLE groups (
    name       TEXT NOT NULL PRIMARY KEY,
    primary_id TEXT
) STRICT;

CREATE TABLE instances (
    group_name     TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    failure_reason TEXT,
    address        TEXT,
    created_at_ms  INTEGER NOT NULL,
    tags_json      TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (group_name, id)
) STRICT;

CREATE TABLE samples (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name  TEXT    NOT NULL,
    instance    TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL,
    values_json TEXT    NOT NULL
) STRICT;

CREATE INDEX samples_group_id ON samples (group_name, id);

CREATE TABLE policy_state (
    group_name        TEXT    NOT NULL PRIMARY KEY,
    up_count          INTEGER NOT NULL,
    down_count        INTEGER NOT NULL,
    last_sample_at_ms INTEGER NOT NULL,
    last_scale_out_ms INTEGER,
    last_scale_in_ms  INTEGER
) STRICT;

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms      INTEGER NOT NULL,
    group_name TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    message    TEXT    NOT NULL
) STRICT;

CREATE INDEX events_group_id ON events (group_name, id);

CREATE TABLE operations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name     TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    payload_json   TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    failure_reason TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
) STRICT;

CREATE INDEX operations_group_id ON operations (group_name, id);

-- One change per group at a time, enforced by the database itself (also across processes).
CREATE UNIQUE INDEX operations_one_pending_per_group ON operations (group_name) WHERE state = 'pending';
