//! Names every part must spell the same: HTTP headers between the balancer, members and clients,
//! and the tag keys providers set on members (see also [`crate::TEMPLATE_TAG`] and
//! [`crate::READY_TAG`]).

/// A member names itself in this response header (the bundled workload does), so a health probe
/// can tell it from whatever else answers on a reused port.
pub const MEMBER_HEADER: &str = "x-flotilla-member";

/// The embedded balancer names the member that served a response in this header (load
/// generators count by it).
pub const BACKEND_HEADER: &str = "x-flotilla-backend";

/// The tag a provider sets when a member's SSH server is not at `<address host>:22` (forwarded
/// ports: `127.0.0.1:2201`; a floating IP: `<fip>:22`).
pub const SSH_ADDRESS_TAG: &str = "ssh_address";
