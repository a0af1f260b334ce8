//! repair (being written).
