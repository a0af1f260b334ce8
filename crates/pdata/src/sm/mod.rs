//! Space maps: reference counts of metadata blocks and of data blocks.
//!
//! During a transaction the counts live in memory ([`counts::RefCounts`]);
//! [`disk`] reads and writes them in the kernel's on-disk form: bitmaps of
//! 2-bit entries, a ref-count B-tree for counts of 3 and more, and an index
//! (a B-tree for the data space map, one index block for the metadata space
//! map).

pub mod counts;
pub mod disk;
pub mod root;

pub use counts::RefCounts;
pub use root::SmRoot;
pub mod data;
pub mod metadata;

pub use data::DataSpaceMap;
pub use metadata::MetadataSpaceMap;
