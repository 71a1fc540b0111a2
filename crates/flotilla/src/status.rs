//! `flotilla status`: the report is the API's JSON contract (`flotilla_api::report`); this module is
//! where the binary finds it.

pub use flotilla_api::report::*;
