-- The last known state of each of a group's alarms (evaluated by Flotilla or reported to a receiver).
CREATE TABLE alarm_states (
    group_name TEXT    NOT NULL REFERENCES groups (name),
    name       TEXT    NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('ok', 'alarm', 'insufficient data')),
    since_ms   INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    PRIMARY KEY (group_name, name)
) STRICT;

-- Receiver calls already taken, by a key unique to each call: a replay is refused, even after a
-- restart. Trimmed by age.
CREATE TABLE signals_seen (
    key   TEXT    NOT NULL PRIMARY KEY,
    at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX signals_seen_at ON signals_seen (at_ms);
