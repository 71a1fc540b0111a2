//! Metric sources and windows: /proc maths for local members.
