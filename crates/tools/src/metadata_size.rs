//! metadata_size (being written).
