//! restore (being written).
