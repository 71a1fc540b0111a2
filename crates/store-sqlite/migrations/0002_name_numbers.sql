-- The highest member number ever reserved per name base (`<base>_N`): numbers are never reused.
CREATE TABLE name_numbers (
    base TEXT PRIMARY KEY NOT NULL,
    high INTEGER NOT NULL CHECK (high >= 0)
);
