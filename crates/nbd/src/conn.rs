//! One client connection: the handshake, then the transmission phase served
//! by up to `max_in_flight` threads of this connection in turn.
//!
//! Threads take turns as the reader (leader/follower): the thread holding
//! the reader lock reads one whole request (header and WRITE payload),
//! releases the lock, and executes it while the next thread reads the next
//! request; replies go out under the writer lock, in completion order
//! (small replies that find the writer busy are queued and sent by its
//! holder, several in one write).  A
//! thread that finds no other thread waiting to read starts one more (up to
//! the limit), so a client with 32 requests in flight gets parallel
//! execution, an idle connection costs one blocked thread, and a busy one
//! never hands a request from thread to thread.  When every thread is busy
//! nobody reads: the socket fills and the client waits (bounded in-flight).
//!
//! Large payloads take a grant from the server-wide byte budget before their
//! buffer is allocated, so many clients sending 32 MiB writes at once wait
//! instead of exhausting memory.

use crate::handshake::{greet, negotiate, Negotiated, Policy};
use crate::proto::{CMD_DISC, CMD_READ, CMD_WRITE};
use crate::server::{Grant, Shared};
use crate::stream::{Reader, Stream, Writer};
use crate::tls::TlsStream;
use crate::transmission::Session;
use crate::wire::{Request, REQUEST_LEN};
use std::io::{self, BufReader, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread;

/// Read buffer of a connection: holds many small request headers.
const READ_BUF: usize = 64 << 10;
/// Payloads above this take a grant from the byte budget.
const GRANT_MIN: u32 = 64 << 10;
/// Replies up to this size may be queued for another thread to send.
const COALESCE_MAX: usize = 64 << 10;
/// Buffers above this are freed after their request.
const KEEP_BUF: usize = (4 << 20) + 64;

struct Conn<S: Stream> {
    shared: Arc<Shared>,
    id: u64,
    peer: String,
    session: Box<Session>,
    stream: Arc<S>,
    reader: Mutex<BufReader<Reader<S>>>,
    writer: Mutex<Writer<S>>,
    /// Small replies of threads that found the writer busy; whoever holds
    /// the writer sends them (in one write) before letting it go.
    queued: Mutex<Vec<u8>>,
    /// Set once nobody must read any more (DISC, EOF, error, shutdown).
    closing: AtomicBool,
    /// Live threads of this connection.
    threads: AtomicUsize,
    /// Threads waiting for or holding the reader.
    readers: AtomicUsize,
}

enum Incoming<'a> {
    /// A request, its payload length in the payload buffer, and its grant.
    Request(Request, usize, Option<Grant<'a>>),
    Disc,
    Eof,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serve `stream` until it closes; runs on the connection's first thread.
pub(crate) fn serve<S: Stream>(shared: Arc<Shared>, id: u64, stream: Arc<S>) {
    let timeout = shared.opts.handshake_timeout;
    if let Err(e) = stream.set_write_timeout(shared.opts.reply_timeout) {
        log::debug!("{}: cannot set a send timeout: {e}", stream.peer());
    }
    let mut reader = BufReader::with_capacity(READ_BUF, Reader::new(stream.clone(), timeout));
    let mut writer = Writer(stream.clone());
    match greet(&mut reader, &mut writer) {
        Ok(flags) => haggle(shared, id, stream, reader, writer, flags, false),
        Err(e) => {
            log::debug!("{}: handshake ended: {e}", stream.peer());
            finish(&shared, id, &*stream)
        }
    }
}

/// Option haggling, then transmission (or TLS and haggling again).
fn haggle<S: Stream>(
    shared: Arc<Shared>,
    id: u64,
    stream: Arc<S>,
    mut reader: BufReader<Reader<S>>,
    mut writer: Writer<S>,
    client_flags: u32,
    tls_active: bool,
) {
    let peer = stream.peer();
    let tls = shared.opts.tls.as_ref();
    let policy = Policy {
        exports: &*shared.exports,
        default_export: shared.default_export.as_deref(),
        max_request: shared.opts.max_request,
        sparse_reads: shared.opts.sparse_reads,
        stopping: &shared.stopping,
        tls_offered: tls.is_some(),
        tls_required: tls.is_some_and(|t| t.required),
        tls_active,
    };
    let negotiated = negotiate(&mut reader, &mut writer, &policy, client_flags);
    let session = match negotiated {
        Ok(Negotiated::Session(s)) => match reader.get_mut().clear_deadline() {
            Ok(()) => s,
            Err(e) => {
                log::debug!("{peer}: {e}");
                return finish(&shared, id, &*stream);
            }
        },
        Ok(Negotiated::StartTls) => return start_tls(shared, id, stream, reader, client_flags),
        Ok(Negotiated::Abort) => {
            log::debug!("{peer}: client aborted the handshake");
            return finish(&shared, id, &*stream);
        }
        Err(e) => {
            log::debug!("{peer}: handshake ended: {e}");
            return finish(&shared, id, &*stream);
        }
    };
    log::debug!(
        "{peer}: export {:?}, {} bytes, flags {:#x}, structured {}, base:allocation {}",
        session.name,
        session.size,
        session.flags,
        session.structured,
        session.meta
    );
    let conn = Arc::new(Conn {
        shared,
        id,
        peer,
        session,
        stream,
        reader: Mutex::new(reader),
        writer: Mutex::new(writer),
        queued: Mutex::new(Vec::new()),
        closing: AtomicBool::new(false),
        threads: AtomicUsize::new(1),
        readers: AtomicUsize::new(0),
    });
    worker(conn);
}

/// After the go-ahead for `NBD_OPT_STARTTLS`: the TLS handshake, then
/// haggling again over TLS.
fn start_tls<S: Stream>(
    shared: Arc<Shared>,
    id: u64,
    stream: Arc<S>,
    reader: BufReader<Reader<S>>,
    client_flags: u32,
) {
    // The client must wait for the reply before its TLS handshake; bytes
    // already buffered would be lost to TLS.
    let tls = match (&shared.opts.tls, reader.buffer().is_empty()) {
        (Some(t), true) => t.clone(),
        (None, _) => return finish(&shared, id, &*stream),
        (_, false) => {
            log::debug!(
                "{}: data after STARTTLS before the TLS handshake",
                stream.peer()
            );
            return finish(&shared, id, &*stream);
        }
    };
    let sock: Arc<dyn Stream> = stream.clone();
    let tls_stream = match TlsStream::new(sock, &tls) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            log::warn!("{}: cannot start TLS: {e}", stream.peer());
            return finish(&shared, id, &*stream);
        }
    };
    let timeout = shared.opts.handshake_timeout;
    let reader = BufReader::with_capacity(READ_BUF, Reader::new(tls_stream.clone(), timeout));
    let writer = Writer(tls_stream.clone());
    haggle(shared, id, tls_stream, reader, writer, client_flags, true)
}

fn finish<S: Stream + ?Sized>(shared: &Shared, id: u64, stream: &S) {
    let _ = stream.shutdown(Shutdown::Both);
    shared.deregister(id);
}

/// Read until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn worker<S: Stream>(conn: Arc<Conn<S>>) {
    let mut payload = Vec::new();
    let mut out = Vec::new();
    loop {
        conn.readers.fetch_add(1, SeqCst);
        let incoming = {
            let mut r = lock(&conn.reader);
            if conn.closing.load(SeqCst) {
                None
            } else {
                Some(conn.read_request(&mut r, &mut payload))
            }
        };
        let others_reading = conn.readers.fetch_sub(1, SeqCst) > 1;
        let (req, plen, grant) = match incoming {
            None => break,
            Some(Ok(Incoming::Request(req, plen, grant))) => (req, plen, grant),
            Some(Ok(Incoming::Disc)) => {
                log::debug!("{}: client disconnected", conn.peer);
                conn.stop_reading();
                break;
            }
            Some(Ok(Incoming::Eof)) => {
                log::debug!("{}: connection closed by the client", conn.peer);
                conn.stop_reading();
                break;
            }
            Some(Err(e)) => {
                if !conn.closing.load(SeqCst) {
                    log::debug!("{}: dropping connection: {e}", conn.peer);
                }
                conn.stop_reading();
                break;
            }
        };
        if !others_reading {
            conn.spawn_helper();
        }
        let n = conn.session.execute(&req, &payload[..plen], &mut out);
        let sent = conn.send_reply(&out[..n]);
        drop(grant);
        if let Err(e) = sent {
            log::debug!("{}: reply failed: {e}", conn.peer);
            conn.closing.store(true, SeqCst);
            let _ = conn.stream.shutdown(Shutdown::Both);
            break;
        }
        if out.len() > KEEP_BUF {
            out = Vec::new();
        }
        if payload.len() > KEEP_BUF {
            payload = Vec::new();
        }
    }
    conn.exit_thread();
}

impl<S: Stream> Conn<S> {
    fn read_request(
        &self,
        r: &mut BufReader<Reader<S>>,
        payload: &mut Vec<u8>,
    ) -> io::Result<Incoming<'_>> {
        let mut hdr = [0u8; REQUEST_LEN];
        match read_full(r, &mut hdr)? {
            0 => return Ok(Incoming::Eof),
            REQUEST_LEN => {}
            _ => return Err(io::ErrorKind::UnexpectedEof.into()),
        }
        let req = Request::decode(&hdr)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let max = self.session.sizes.maximum;
        let budget = &self.shared.budget;
        let grant = |len: u32| (len > GRANT_MIN && len <= max).then(|| budget.acquire(len.into()));
        match req.kind {
            CMD_DISC => Ok(Incoming::Disc),
            CMD_WRITE if req.length > max => {
                // Skip the payload so the stream stays in step; the reply is EINVAL.
                log::debug!("{}: skipping a {} byte write", self.peer, req.length);
                let want = u64::from(req.length);
                if io::copy(&mut r.take(want), &mut io::sink())? < want {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(Incoming::Request(req, 0, None))
            }
            CMD_WRITE => {
                let g = grant(req.length);
                let len = req.length as usize;
                if payload.len() < len {
                    payload.resize(len, 0);
                }
                r.read_exact(&mut payload[..len])?;
                Ok(Incoming::Request(req, len, g))
            }
            CMD_READ => Ok(Incoming::Request(req, 0, grant(req.length))),
            _ => Ok(Incoming::Request(req, 0, None)),
        }
    }

    /// Sends one reply.  A small reply is queued when the writer is busy
    /// (its holder sends the queue before releasing it), so replies
    /// completing together go out in one write and no thread sleeps on the
    /// writer for them; a large one waits for the writer.
    fn send_reply(&self, reply: &[u8]) -> io::Result<()> {
        let mut w = if reply.len() <= COALESCE_MAX {
            lock(&self.queued).extend_from_slice(reply);
            match self.writer.try_lock() {
                Ok(w) => w,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                // The holder sends it (see below).
                Err(TryLockError::WouldBlock) => return Ok(()),
            }
        } else {
            let mut w = lock(&self.writer);
            w.write_all(reply)?;
            w
        };
        loop {
            let batch = std::mem::take(&mut *lock(&self.queued));
            if !batch.is_empty() {
                w.write_all(&batch)?;
            }
            drop(w);
            // Queued after the take: its thread found the writer busy, so
            // look again now that it is free.
            if lock(&self.queued).is_empty() {
                return Ok(());
            }
            w = match self.writer.try_lock() {
                Ok(w) => w,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) => return Ok(()),
            };
        }
    }

    /// Start one more thread unless closing or at the limit.
    fn spawn_helper(self: &Arc<Self>) {
        if self.closing.load(SeqCst) {
            return;
        }
        let max = self.shared.opts.max_in_flight.max(1);
        if self
            .threads
            .fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1))
            .is_err()
        {
            return;
        }
        let c = self.clone();
        let spawned = thread::Builder::new()
            .name(format!("nbd-conn-{}", self.id))
            .stack_size(self.shared.opts.thread_stack)
            .spawn(move || worker(c));
        if let Err(e) = spawned {
            log::warn!("{}: cannot start a thread: {e}", self.peer);
            self.threads.fetch_sub(1, SeqCst);
        }
    }

    /// No more requests: wake the reader; in-flight requests still reply.
    fn stop_reading(&self) {
        self.closing.store(true, SeqCst);
        let _ = self.stream.shutdown(Shutdown::Read);
    }

    fn exit_thread(&self) {
        if self.threads.fetch_sub(1, SeqCst) == 1 {
            finish(&self.shared, self.id, &*self.stream);
        }
    }
}
