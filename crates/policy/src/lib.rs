//! The pure decision core: threshold policy, bounds, cooldowns, victims. No I/O; time is an argument.
