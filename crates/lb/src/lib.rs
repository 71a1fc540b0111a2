//! Balancers. For now a balancer that records calls; the embedded HTTP/TCP engine comes next.
