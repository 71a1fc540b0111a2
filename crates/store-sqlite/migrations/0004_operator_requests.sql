-- An operator's pending one-shot request (`desired 3`, `drain web_2`) and the cut-off of a rolling
-- replacement an operator asked for.
ALTER TABLE group_controls ADD COLUMN request TEXT;
ALTER TABLE group_controls ADD COLUMN replace_before_ms INTEGER;
