-- A machine-readable detail beside an event's message (JSON), e.g. what a decision saw and why.
ALTER TABLE events ADD COLUMN data TEXT;

-- Pages of events by time (the API's before_ms cursor), per group and across groups.
CREATE INDEX events_group_at ON events (group_name, at_ms, id);
CREATE INDEX events_at ON events (at_ms, id);
