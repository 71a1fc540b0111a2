-- What an operator set on a group at run time (pause, dry-run, protected members).
CREATE TABLE group_controls (
    group_name TEXT    NOT NULL PRIMARY KEY REFERENCES groups (name),
    paused     INTEGER NOT NULL CHECK (paused IN (0, 1)),
    dry_run    INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    -- A JSON array of member ids.
    protected  TEXT    NOT NULL
) STRICT;
