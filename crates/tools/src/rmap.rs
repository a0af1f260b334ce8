//! rmap (being written).
