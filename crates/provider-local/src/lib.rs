//! The embedded default provider: members are detached local processes running `flotilla workload`.
