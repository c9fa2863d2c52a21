//! rate_limit (being written).
