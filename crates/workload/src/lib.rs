//! The bundled member workload server: /work, /healthz, /load.
