//! ir (being written).
