//! A tiny NBD server for trying clients and benchmarking the protocol layer
//! without the pool engine:
//!
//! ```text
//! cargo run --release -p uthin-nbd --example serve -- \
//!     [--file PATH | --mem SIZE] [--name NAME] [--read-only] \
//!     [--socket PATH] [--tcp ADDR] [--threads N] [--seconds N]
//! ```
//!
//! `--file` serves a file or block device (`FileExport`), `--mem` a sparse
//! in-memory export (`MemExport`, sizes like `4G`); the export is also the
//! default export.  Listens on `--socket` (default `./uthin-nbd.sock`) and,
//! if given, on `--tcp` (e.g. `127.0.0.1:10809`).  Runs until killed, or for
//! `--seconds` and then shuts down gracefully.

use std::sync::Arc;
use std::time::Duration;
use uthin_nbd::{Export, ExportMap, FileExport, MemExport, Server, ServerOptions};

fn size(s: &str) -> u64 {
    let (num, mul) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        Some('T' | 't') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>().expect("size") * mul
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let (mut file, mut mem, mut name, mut ro) = (None, None, "vol0".to_string(), false);
    let (mut socket, mut tcp, mut seconds) = ("uthin-nbd.sock".to_string(), None, None);
    let mut opts = ServerOptions::default();
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--file" => file = Some(val()),
            "--mem" => mem = Some(size(&val())),
            "--name" => name = val(),
            "--read-only" => ro = true,
            "--socket" => socket = val(),
            "--tcp" => tcp = Some(val()),
            "--threads" => opts.max_in_flight = val().parse().expect("threads"),
            "--seconds" => seconds = Some(val().parse::<u64>().expect("seconds")),
            _ => panic!("unknown argument {a}; see the example's doc comment"),
        }
    }
    let export: Arc<dyn Export> = match (file, mem) {
        (Some(f), None) => Arc::new(FileExport::open(f.as_ref(), ro).expect("open file")),
        (None, Some(n)) if ro => Arc::new(MemExport::new(n).read_only()),
        (None, Some(n)) => Arc::new(MemExport::new(n)),
        _ => panic!("give one of --file PATH or --mem SIZE"),
    };
    let size = export.size();
    let exports = Arc::new(ExportMap::new());
    exports.insert(name.clone(), export);
    let server = Server::new(exports, Some(&name), opts);
    server
        .listen_unix(&socket)
        .expect("listen on the unix socket");
    println!("serving {name} ({size} bytes): nbdinfo 'nbd+unix:///{name}?socket={socket}'");
    if let Some(addr) = tcp {
        let bound = server.listen_tcp(addr.as_str()).expect("listen on TCP");
        println!("also on nbd://{bound}/{name}");
    }
    match seconds {
        Some(s) => {
            std::thread::sleep(Duration::from_secs(s));
            let drained = server.shutdown(Duration::from_secs(10));
            println!("stopped (drained: {drained})");
        }
        None => loop {
            std::thread::park();
        },
    }
}
