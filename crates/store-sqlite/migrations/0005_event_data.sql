-- A machine-readable detail beside an event's message (JSON), e.g. what a decision saw and why.
ALTER TABLE events ADD COLUMN data TEXT;
