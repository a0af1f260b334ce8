//! The transport seam: the server speaks NBD over any [`Stream`] (TCP and
//! unix sockets here; TLS later), shared by reference between the thread
//! reading requests and the threads writing replies.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bidirectional byte stream used through shared references: one thread
/// receives while others send, and any thread may shut it down.
pub trait Stream: Send + Sync + 'static {
    /// Read some bytes (0 at end of stream).
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Write some bytes.
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
    /// Shut down one or both directions; a blocked `recv` returns 0 after
    /// `Shutdown::Read`.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    /// Bound how long a `recv` may block (`None`: forever).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Bound how long a `send` may block (`None`: forever).
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// The peer, for logs.
    fn peer(&self) -> String;
}

impl Stream for TcpStream {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&mut &*self).read(buf)
    }
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        (&mut &*self).write(buf)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
    fn peer(&self) -> String {
        self.peer_addr()
            .map_or_else(|_| "tcp".to_string(), |a| a.to_string())
    }
}

impl Stream for UnixStream {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&mut &*self).read(buf)
    }
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        (&mut &*self).write(buf)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        UnixStream::shutdown(self, how)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, timeout)
    }
    fn peer(&self) -> String {
        "unix".to_string()
    }
}

/// The receiving side, with an optional deadline (the handshake's): every
/// `read` fails with `TimedOut` once the deadline has passed.
pub(crate) struct Reader<S> {
    stream: Arc<S>,
    deadline: Option<Instant>,
}

impl<S: Stream> Reader<S> {
    pub(crate) fn new(stream: Arc<S>, timeout: Option<Duration>) -> Self {
        Reader {
            stream,
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    /// Drop the deadline (the handshake is over).
    pub(crate) fn clear_deadline(&mut self) -> io::Result<()> {
        if self.deadline.take().is_some() {
            self.stream.set_read_timeout(None)?;
        }
        Ok(())
    }
}

impl<S: Stream> Read for Reader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        self.stream.recv(buf)
    }
}

/// The sending side.
pub(crate) struct Writer<S>(pub(crate) Arc<S>);

impl<S: Stream> Write for Writer<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
