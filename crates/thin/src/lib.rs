//! thin metadata
