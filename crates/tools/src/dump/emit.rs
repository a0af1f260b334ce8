//! Reading the leaves for output and emitting their mappings as runs.
//!
//! Leaves are read in output order by a prefetch thread: contiguous blocks
//! in one read, batches of up to [`BATCH`] blocks, checksums and node
//! headers checked there; the calling thread decodes and formats.  A
//! bounded channel keeps at most a few batches in memory.

use super::runs::Entry;
use super::walk::Tolerance;
use crate::error::{Error, Result};
use crate::ir::{MetadataVisitor, RunBuilder};
use crossbeam_channel::{bounded, Receiver};
use uthin_block_io::{SharedDevice, BLOCK_SIZE};
use uthin_pdata::btree::node::Node;
use uthin_pdata::types::BlockData;
use uthin_pdata::validator::{Validator, NODE};
use uthin_pdata::MetaBlock;

/// Blocks per batch handed from the prefetch thread.
pub const BATCH: usize = 128;

struct Batch {
    data: Vec<u8>,
    /// Blocks of the batch that are unusable, with why.
    bad: Vec<(usize, String)>,
}

/// Checks a block read for output: a valid leaf of 8-byte values.
fn check_leaf(blk: u64, d: &BlockData) -> std::result::Result<(), String> {
    NODE.check(MetaBlock(blk), d).map_err(|e| e.to_string())?;
    let n = Node::new(d);
    n.check(MetaBlock(blk), 8).map_err(|e| e.to_string())?;
    if !n.is_leaf() {
        return Err(format!("block {blk} is not a leaf"));
    }
    Ok(())
}

fn read_batch(dev: &SharedDevice, nr_blocks: u64, blocks: &[u64]) -> Batch {
    let mut data = vec![0u8; blocks.len() * BLOCK_SIZE];
    let mut bad = Vec::new();
    let mut j = 0;
    while j < blocks.len() {
        let mut k = j + 1;
        while k < blocks.len() && blocks[k] == blocks[k - 1].wrapping_add(1) {
            k += 1;
        }
        if blocks[k - 1] >= nr_blocks || blocks[j] >= nr_blocks {
            for (i, &b) in blocks.iter().enumerate().take(k).skip(j) {
                if b >= nr_blocks {
                    bad.push((
                        i,
                        format!("block {b} is beyond the end of the metadata device"),
                    ));
                } else if let Err(e) = dev.read_at(
                    &mut data[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE],
                    b * BLOCK_SIZE as u64,
                ) {
                    bad.push((i, format!("I/O error reading block {b}: {e}")));
                }
            }
        } else if let Err(e) = dev.read_at(
            &mut data[j * BLOCK_SIZE..k * BLOCK_SIZE],
            blocks[j] * BLOCK_SIZE as u64,
        ) {
            for (i, b) in blocks.iter().enumerate().take(k).skip(j) {
                bad.push((i, format!("I/O error reading block {b}: {e}")));
            }
        }
        j = k;
    }
    for (i, &b) in blocks.iter().enumerate() {
        if bad.iter().any(|x| x.0 == i) {
            continue;
        }
        let d: &BlockData = data[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE]
            .try_into()
            .expect("block sized");
        if let Err(why) = check_leaf(b, d) {
            bad.push((i, why));
        }
    }
    bad.sort_unstable_by_key(|x| x.0);
    Batch { data, bad }
}

/// The leaves, in output order, as the prefetch thread delivers them.
struct LeafStream {
    rx: Receiver<Batch>,
    cur: Option<Batch>,
    at: usize,
    bad_at: usize,
}

impl LeafStream {
    /// The next leaf: its bytes, or why it cannot be used.
    fn next(&mut self) -> Result<std::result::Result<&BlockData, String>> {
        let exhausted = match &self.cur {
            Some(b) => self.at * BLOCK_SIZE >= b.data.len(),
            None => true,
        };
        if exhausted {
            self.cur = Some(
                self.rx
                    .recv()
                    .map_err(|_| Error::msg("leaf reader stopped early"))?,
            );
            self.at = 0;
            self.bad_at = 0;
        }
        let b = self.cur.as_ref().expect("set above");
        let i = self.at;
        self.at += 1;
        if let Some((bi, why)) = b.bad.get(self.bad_at) {
            if *bi == i {
                self.bad_at += 1;
                return Ok(Err(why.clone()));
            }
        }
        Ok(Ok(b.data[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE]
            .try_into()
            .expect("block sized")))
    }
}

/// What to emit, in order.
pub enum Item<'a> {
    Def(u64, &'a [u64]),
    Device(&'a crate::ir::Device, &'a [Entry]),
}

/// Emits the mappings of `leaves` as runs (one run builder for the whole
/// sequence, as 1.x does).
fn emit_leaves(
    stream: &mut LeafStream,
    leaves: &[u64],
    out: &mut dyn MetadataVisitor,
    tol: Tolerance,
) -> Result<()> {
    let mut rb = RunBuilder::new();
    for &blk in leaves {
        let d = match stream.next()? {
            Ok(d) => d,
            Err(why) => {
                tol.absorb(Error::msg(why))?;
                continue;
            }
        };
        let n = Node::new(d);
        let nr = n.nr_entries();
        let voff = 32 + 8 * n.max_entries();
        let keys = &d[32..32 + 8 * nr];
        let vals = &d[voff..voff + 8 * nr];
        let mut last: Option<u64> = None;
        for (k, v) in keys.chunks_exact(8).zip(vals.chunks_exact(8)) {
            let k = u64::from_le_bytes(k.try_into().expect("8 bytes"));
            let v = u64::from_le_bytes(v.try_into().expect("8 bytes"));
            if last.is_some_and(|l| k <= l) {
                tol.absorb(Error::Pdata(uthin_pdata::Error::corrupt(
                    "btree node",
                    MetaBlock(blk),
                    format!("key {k} out of order"),
                )))?;
                continue;
            }
            last = Some(k);
            if let Some(run) = rb.next(k, v >> 24, (v & 0xFF_FFFF) as u32) {
                out.map(&run)?;
            }
        }
    }
    if let Some(run) = rb.complete() {
        out.map(&run)?;
    }
    Ok(())
}

/// Emits `items` (defs, then devices) to `out`, reading their leaves from
/// `dev` (`nr_blocks` long); progress goes to the tolerance's report.
pub fn emit_items(
    dev: &SharedDevice,
    nr_blocks: u64,
    items: &[Item],
    out: &mut dyn MetadataVisitor,
    tol: Tolerance,
) -> Result<()> {
    let mut reads: Vec<u64> = Vec::new();
    for it in items {
        match it {
            Item::Def(_, leaves) => reads.extend_from_slice(leaves),
            Item::Device(_, entries) => reads.extend(entries.iter().filter_map(|e| match e {
                Entry::Leaf(b) => Some(*b),
                Entry::Ref(_) => None,
            })),
        }
    }
    tol.report.start("Dumping", reads.len() as u64);
    let (tx, rx) = bounded::<Batch>(8);
    let r = std::thread::scope(|s| {
        let reads = &reads;
        s.spawn(move || {
            for chunk in reads.chunks(BATCH) {
                if tx.send(read_batch(dev, nr_blocks, chunk)).is_err() {
                    break;
                }
            }
        });
        let mut stream = LeafStream {
            rx,
            cur: None,
            at: 0,
            bad_at: 0,
        };
        let r = emit_all(&mut stream, items, out, tol);
        drop(stream);
        r
    });
    tol.report.finish();
    r
}

fn emit_all(
    stream: &mut LeafStream,
    items: &[Item],
    out: &mut dyn MetadataVisitor,
    tol: Tolerance,
) -> Result<()> {
    for it in items {
        match it {
            Item::Def(head, leaves) => {
                out.def_begin(&head.to_string())?;
                emit_leaves(stream, leaves, out, tol)?;
                tol.report.inc(leaves.len() as u64);
                out.def_end()?;
            }
            Item::Device(d, entries) => {
                out.device_begin(d)?;
                let mut i = 0;
                while i < entries.len() {
                    match entries[i] {
                        Entry::Ref(head) => {
                            out.ref_shared(&head.to_string())?;
                            i += 1;
                        }
                        Entry::Leaf(_) => {
                            let mut j = i;
                            let mut leaves = Vec::new();
                            while let Some(Entry::Leaf(b)) = entries.get(j) {
                                leaves.push(*b);
                                j += 1;
                            }
                            emit_leaves(stream, &leaves, out, tol)?;
                            tol.report.inc(leaves.len() as u64);
                            i = j;
                        }
                    }
                }
                out.device_end()?;
            }
        }
    }
    Ok(())
}
