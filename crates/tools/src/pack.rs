//! pack (being written).
