//! The flotilla binary: daemon and CLI.
fn main() {}
