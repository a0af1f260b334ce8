//! Newtypes for the number spaces of thin metadata.

use std::fmt;

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident($t:ty)) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $t);
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

newtype!(
    /// A thin device id (dm-thin accepts 0 ..= 2^24 - 1).
    DevId(u64)
);
newtype!(
    /// A block on the data device, in data-block-size units.
    DataBlock(u64)
);
newtype!(
    /// A block of a thin device's virtual address space.
    VirtBlock(u64)
);
newtype!(
    /// The user-controlled transaction id.
    TransactionId(u64)
);
newtype!(
    /// The pool's snapshot time counter.
    Time(u32)
);

impl DevId {
    /// Largest id dm-thin accepts.
    pub const MAX: DevId = DevId((1 << 24) - 1);
}

impl DataBlock {
    /// Largest data block a mapping can hold (40 bits).
    pub const MAX: DataBlock = DataBlock((1 << 40) - 1);
}

impl Time {
    /// Largest time a mapping can hold (24 bits).
    pub const MAX: Time = Time((1 << 24) - 1);
}
