//! TLS for NBD (`NBD_OPT_STARTTLS`, the spec's "TLS" section), with rustls.
//!
//! [`Tls`] is the server's setting: a certificate chain and key, and
//! whether TLS is required (then every option but `STARTTLS` and `ABORT`
//! gets `NBD_REP_ERR_TLS_REQD` until TLS is up).  [`TlsStream`] is a
//! [`Stream`] over another one, used through shared references like any
//! stream: one thread receives while others send.
//!
//! Receiving decrypts what is buffered, or reads one batch of records from
//! the socket with no lock held (so senders are not blocked behind a
//! waiting reader) and feeds it to the TLS state.  Sending encrypts under
//! the state lock and writes the records under the socket write lock,
//! taken before the state lock is released, so records reach the socket in
//! the order they were made.  The TLS handshake is driven by the first
//! receive after `STARTTLS`.

use crate::stream::Stream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The server's TLS setting.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The rustls configuration (certificate chain and key).
    pub config: Arc<ServerConfig>,
    /// Refuse to serve anything before `STARTTLS`.
    pub required: bool,
}

impl Tls {
    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
    /// or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path, required: bool) -> io::Result<Tls> {
        let bad = |p: &Path, e: &dyn std::fmt::Display| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display()))
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(cert, &e))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(cert, &e))?;
        if certs.is_empty() {
            return Err(bad(cert, &"no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(cert, &e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad(cert, &e))?;
        Ok(Tls {
            config: Arc::new(config),
            required,
        })
    }
}

/// Most ciphertext read from the socket at once.
const RAW_BUF: usize = 64 << 10;

/// TLS over another stream.
pub struct TlsStream {
    sock: Arc<dyn Stream>,
    conn: Mutex<ServerConnection>,
    /// Ciphertext read but not yet taken by the TLS state.
    pending: Mutex<Vec<u8>>,
    /// Held while writing records to the socket.
    sending: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl TlsStream {
    /// Starts the server side of a TLS session on `sock` (the handshake
    /// runs on the first receive).
    pub fn new(sock: Arc<dyn Stream>, tls: &Tls) -> io::Result<TlsStream> {
        let conn = ServerConnection::new(tls.config.clone()).map_err(tls_error)?;
        Ok(TlsStream {
            sock,
            conn: Mutex::new(conn),
            pending: Mutex::new(Vec::new()),
            sending: Mutex::new(()),
        })
    }

    /// Writes whatever records the TLS state has ready; the state lock is
    /// released once the socket lock is held.
    fn flush_records(&self, mut conn: MutexGuard<'_, ServerConnection>) -> io::Result<()> {
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out)?;
        }
        if out.is_empty() {
            return Ok(());
        }
        let _sending = lock(&self.sending);
        drop(conn);
        let mut rest = &out[..];
        while !rest.is_empty() {
            match self.sock.send(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Stream for TlsStream {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut conn = lock(&self.conn);
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // No plaintext: feed ciphertext, reading more if none is left.
            let mut pending = lock(&self.pending);
            if pending.is_empty() {
                drop(pending);
                drop(conn);
                let mut raw = vec![0u8; RAW_BUF];
                let n = self.sock.recv(&mut raw)?;
                if n == 0 {
                    return Ok(0);
                }
                raw.truncate(n);
                conn = lock(&self.conn);
                pending = lock(&self.pending);
                pending.extend_from_slice(&raw);
            }
            let mut rd = &pending[..];
            let taken = conn.read_tls(&mut rd)?;
            pending.drain(..taken);
            drop(pending);
            let processed = conn.process_new_packets();
            // Handshake messages, alerts and key updates go out either way.
            self.flush_records(conn)?;
            processed.map_err(tls_error)?;
        }
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let mut conn = lock(&self.conn);
        let n = conn.writer().write(buf)?;
        self.flush_records(conn)?;
        Ok(n)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Read {
            let mut conn = lock(&self.conn);
            conn.send_close_notify();
            let _ = self.flush_records(conn);
        }
        self.sock.shutdown(how)
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(timeout)
    }

    fn peer(&self) -> String {
        format!("{} (TLS)", self.sock.peer())
    }
}
