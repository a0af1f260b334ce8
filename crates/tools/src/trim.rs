//! trim (being written).
