//! NBD server for uthin: serves [`Export`]s (a pool's thin volumes, a file,
//! memory) to any NBD client, per NetworkBlockDevice/nbd `doc/proto.md`.
//!
//! * [`export`]: the [`Export`] trait the server calls, its error type with
//!   the NBD error values, and the [`Exports`] name registry.
//! * [`server`]: [`Server`] with unix and TCP listeners, connection limits,
//!   graceful shutdown.
//! * `handshake` / `transmission` / `conn`: fixed newstyle option haggling,
//!   request checking and replies, and the threads of one connection.
//! * [`wire`] / [`proto`]: message decoding and the protocol's numbers.
//! * [`MemExport`] and [`FileExport`]: exports for tests and benchmarks.
//!
//! Nothing a client sends can panic the server: decoders return errors,
//! requests are checked before they reach an export, and a client that
//! breaks the protocol is disconnected without disturbing the others.
#![forbid(unsafe_code)]

mod conn;
pub mod export;
pub mod file;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
pub mod mem;
pub mod proto;
pub mod server;
pub mod stream;
pub mod tls;
mod transmission;
pub mod wire;

pub use export::{BlockSizes, Export, ExportError, ExportMap, Exports, Extent, ZeroOptions};
pub use file::FileExport;
pub use mem::MemExport;
pub use proto::Errno;
pub use server::{Server, ServerOptions};
pub use stream::Stream;
pub use tls::{Tls, TlsStream};
