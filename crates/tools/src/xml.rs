//! xml (being written).
