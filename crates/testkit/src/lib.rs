//! Fakes for each seam, clock helpers and scenario builders for tests.
