//! The control loop: observe, decide, apply; operations, recovery, backoff.
