//! ls (being written).
