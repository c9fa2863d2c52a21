//! circuit_breaker (being written).
