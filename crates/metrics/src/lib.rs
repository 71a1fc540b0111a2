//! The local members' metric source: [`LocalProcessSource`] applies `flotilla-procfs` (the pure
//! parsers and the seed's percentage maths) to the processes of the `local` provider's members.

pub mod local;

pub use local::LocalProcessSource;
