//! delta (being written).
