//! The Store on SQLite: the embedded default.
