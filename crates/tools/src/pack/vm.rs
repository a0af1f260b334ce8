//! The block encoding of thin-provisioning-tools 1.x pack files: a small
//! byte-code whose execution emits one 4096-byte block.
//!
//! Each instruction is a byte `tag << 4 | nibble`, maybe followed by an
//! operand.  The machine holds a 64-bit `base` (wrapping arithmetic), reset
//! to 0 for every block.  "Emit base" writes it as 8 little-endian bytes.
//!
//! | tag | name | effect |
//! |---|---|---|
//! | 0 | SET | base = operand of `nibble` bytes (1, 2, 4 or 8); emit base × count |
//! | 1 | POS | × count: base += nibble; emit base |
//! | 2 | POS_W | × count: base += operand (`nibble` bytes); emit base |
//! | 3 | NEG | × count: base −= nibble; emit base |
//! | 4 | NEG_W | × count: base −= operand; emit base |
//! | 5 | CONST | emit base `nibble` times |
//! | 6 | CONST8 | emit base `nibble << 8 \| next byte` times |
//! | 7 | COUNT | run the next instruction `nibble` times |
//! | 8 | COUNT8 | run the next instruction `nibble << 8 \| next byte` times |
//! | 9 | LIT | copy the next `nibble` bytes |
//! | 10 | LIT_W | copy the next n bytes, n an operand of `nibble` bytes |
//! | 11 | SHIFTED_RUN | n = `nibble << 8 \| next byte`; run until 8n bytes are produced (the high parts), then again (the low parts); emit `high << 24 \| low & 0xFFFFFF` for each of the n pairs |
//!
//! "count" is 1 unless a COUNT/COUNT8 prefix says otherwise; CONST, CONST8,
//! LIT and LIT_W take no count.  A block is decoded by running instructions
//! until at least 4096 bytes are out; exactly 4096 must be.
//!
//! The encoder here writes: superblocks, bitmaps, index blocks and anything
//! unrecognised as one literal; B-tree nodes as a literal header, the keys
//! as arithmetic runs, the values as arithmetic runs (internal nodes), a
//! shifted run (leaves with 8-byte values: mapping block/time pairs) or a
//! literal (other leaves), and a literal tail.

use std::io;

const SET: u8 = 0;
const POS: u8 = 1;
const POS_W: u8 = 2;
const NEG: u8 = 3;
const NEG_W: u8 = 4;
const CONST: u8 = 5;
const CONST8: u8 = 6;
const COUNT: u8 = 7;
const COUNT8: u8 = 8;
const LIT: u8 = 9;
const LIT_W: u8 = 10;
const SHIFTED_RUN: u8 = 11;

/// Largest count a COUNT8/CONST8 prefix can hold.
const MAX_COUNT: u64 = 4095;

fn tag(out: &mut Vec<u8>, t: u8, nibble: u8) {
    debug_assert!(t < 16 && nibble < 16);
    out.push(t << 4 | nibble);
}

/// The smallest operand width (1, 2, 4, 8) that holds `v`.
fn width(v: u64) -> u8 {
    if v <= u8::MAX as u64 {
        1
    } else if v <= u16::MAX as u64 {
        2
    } else if v <= u32::MAX as u64 {
        4
    } else {
        8
    }
}

fn operand(out: &mut Vec<u8>, v: u64, w: u8) {
    out.extend_from_slice(&v.to_le_bytes()[..w as usize]);
}

/// COUNT/COUNT8 prefix for `n` (1 ..= 4095) repetitions.
fn count(out: &mut Vec<u8>, n: u64) {
    if n == 1 {
    } else if n < 16 {
        tag(out, COUNT, n as u8);
    } else {
        tag(out, COUNT8, (n >> 8) as u8);
        out.push(n as u8);
    }
}

/// Emits bytes as they are.
pub fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len() as u64;
    if n < 16 {
        tag(out, LIT, n as u8);
    } else {
        let w = width(n);
        tag(out, LIT_W, w);
        operand(out, n, w);
    }
    out.extend_from_slice(bytes);
}

/// Emits `ns` as little-endian u64s: a SET, then runs of equal steps.
pub fn u64s(out: &mut Vec<u8>, ns: &[u64]) {
    let Some((&first, rest)) = ns.split_first() else {
        return;
    };
    let w = width(first);
    tag(out, SET, w);
    operand(out, first, w);
    let mut base = first;
    let mut i = 0;
    while i < rest.len() {
        let step = rest[i].wrapping_sub(base);
        let mut n = 1u64;
        while i + (n as usize) < rest.len()
            && n < MAX_COUNT
            && rest[i + n as usize].wrapping_sub(rest[i + n as usize - 1]) == step
        {
            n += 1;
        }
        if step == 0 {
            if n < 16 {
                tag(out, CONST, n as u8);
            } else {
                tag(out, CONST8, (n >> 8) as u8);
                out.push(n as u8);
            }
        } else {
            // Forward or backward, whichever is the smaller operand.
            let (fwd, mag) = if step <= u64::MAX / 2 {
                (true, step)
            } else {
                (false, step.wrapping_neg())
            };
            count(out, n);
            if mag < 16 {
                tag(out, if fwd { POS } else { NEG }, mag as u8);
            } else {
                let w = width(mag);
                tag(out, if fwd { POS_W } else { NEG_W }, w);
                operand(out, mag, w);
            }
        }
        base = rest[i + n as usize - 1];
        i += n as usize;
    }
}

/// Emits mapping values (block << 24 | time) as a shifted run.
pub fn shifted_u64s(out: &mut Vec<u8>, ns: &[u64]) {
    debug_assert!(!ns.is_empty() && ns.len() as u64 <= MAX_COUNT);
    tag(out, SHIFTED_RUN, (ns.len() >> 8) as u8);
    out.push(ns.len() as u8);
    let high: Vec<u64> = ns.iter().map(|v| v >> 24).collect();
    let low: Vec<u64> = ns.iter().map(|v| v & 0xFF_FFFF).collect();
    u64s(out, &high);
    u64s(out, &low);
}

fn le64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// Encodes a B-tree node (any value size), or the whole block as a literal
/// if its header does not describe a node that fits the block.
pub fn encode_node(out: &mut Vec<u8>, block: &[u8]) {
    let le32 = |o: usize| u32::from_le_bytes(block[o..o + 4].try_into().expect("4")) as usize;
    let (leaf, max, vs) = (le32(4) == 2, le32(20), le32(24));
    let keys_end = 32 + 8 * max;
    let vals_end = keys_end + vs.saturating_mul(max);
    if max == 0 || max as u64 > MAX_COUNT || vals_end > block.len() {
        literal(out, block);
        return;
    }
    literal(out, &block[..32]);
    u64s(out, &le64s(&block[32..keys_end]));
    let vals = &block[keys_end..vals_end];
    match (leaf, vs) {
        (true, 8) => shifted_u64s(out, &le64s(vals)),
        (false, 8) => u64s(out, &le64s(vals)),
        _ => literal(out, vals),
    }
    if vals_end < block.len() {
        literal(out, &block[vals_end..]);
    }
}

fn bad(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt pack data: {why}"),
    )
}

/// Runs the byte-code of one block.
struct Vm<'a> {
    code: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Vm<'a> {
    fn byte(&mut self) -> io::Result<u8> {
        let b = *self.code.get(self.pos).ok_or_else(|| bad("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.code.len());
        let end = end.ok_or_else(|| bad("truncated literal"))?;
        let s = &self.code[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn operand(&mut self, w: u8) -> io::Result<u64> {
        if !matches!(w, 1 | 2 | 4 | 8) {
            return Err(bad("bad operand width"));
        }
        let mut b = [0u8; 8];
        b[..w as usize].copy_from_slice(self.bytes(w as usize)?);
        Ok(u64::from_le_bytes(b))
    }

    fn emit(&self, out: &mut Vec<u8>, limit: usize) -> io::Result<()> {
        if out.len() + 8 > limit {
            return Err(bad("block overflows"));
        }
        out.extend_from_slice(&self.base.to_le_bytes());
        Ok(())
    }

    /// Runs instructions until `out` holds at least `want` bytes (never more
    /// than `limit`).
    fn run(&mut self, out: &mut Vec<u8>, want: usize, limit: usize) -> io::Result<()> {
        while out.len() < want {
            self.instr(out, 1, limit)?;
        }
        Ok(())
    }

    fn instr(&mut self, out: &mut Vec<u8>, times: usize, limit: usize) -> io::Result<()> {
        let b = self.byte()?;
        let (t, nib) = (b >> 4, b & 0xF);
        let single = |times| {
            if times == 1 {
                Ok(())
            } else {
                Err(bad("count before a counted instruction"))
            }
        };
        match t {
            SET => {
                self.base = self.operand(nib)?;
                for _ in 0..times {
                    self.emit(out, limit)?;
                }
            }
            POS | POS_W | NEG | NEG_W => {
                let d = if t == POS || t == NEG {
                    nib as u64
                } else {
                    self.operand(nib)?
                };
                for _ in 0..times {
                    self.base = if t <= POS_W {
                        self.base.wrapping_add(d)
                    } else {
                        self.base.wrapping_sub(d)
                    };
                    self.emit(out, limit)?;
                }
            }
            CONST | CONST8 => {
                single(times)?;
                let n = if t == CONST {
                    nib as usize
                } else {
                    (nib as usize) << 8 | self.byte()? as usize
                };
                for _ in 0..n {
                    self.emit(out, limit)?;
                }
            }
            COUNT | COUNT8 => {
                single(times)?;
                let n = if t == COUNT {
                    nib as usize
                } else {
                    (nib as usize) << 8 | self.byte()? as usize
                };
                self.instr(out, n, limit)?;
            }
            LIT | LIT_W => {
                single(times)?;
                let n = if t == LIT {
                    nib as u64
                } else {
                    self.operand(nib)?
                };
                if out.len() as u64 + n > limit as u64 {
                    return Err(bad("block overflows"));
                }
                out.extend_from_slice(self.bytes(n as usize)?);
            }
            SHIFTED_RUN => {
                single(times)?;
                let n = (nib as usize) << 8 | self.byte()? as usize;
                let mut high = Vec::with_capacity(8 * n);
                self.run(&mut high, 8 * n, 8 * n)?;
                let mut low = Vec::with_capacity(8 * n);
                self.run(&mut low, 8 * n, 8 * n)?;
                // The pairs are written as they are; `base` keeps the value
                // the low parts left it with.
                if out.len() + 8 * n > limit {
                    return Err(bad("block overflows"));
                }
                for (h, l) in le64s(&high).into_iter().zip(le64s(&low)) {
                    out.extend_from_slice(&(h << 24 | (l & 0xFF_FFFF)).to_le_bytes());
                }
            }
            _ => return Err(bad("unknown instruction")),
        }
        Ok(())
    }
}

/// Decodes one block of `size` bytes from `code`; returns it and the number
/// of code bytes used.
pub fn decode(code: &[u8], size: usize) -> io::Result<(Vec<u8>, usize)> {
    let mut vm = Vm {
        code,
        pos: 0,
        base: 0,
    };
    let mut out = Vec::with_capacity(size);
    vm.run(&mut out, size, size)?;
    Ok((out, vm.pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_u64s(ns: &[u64]) {
        let mut code = Vec::new();
        u64s(&mut code, ns);
        let (out, used) = decode(&code, ns.len() * 8).unwrap();
        assert_eq!(used, code.len());
        assert_eq!(le64s(&out), ns);
    }

    #[test]
    fn arithmetic_runs() {
        roundtrip_u64s(&[0]);
        roundtrip_u64s(&[1, 5, 9, 10]);
        roundtrip_u64s(&[1, 2, 3, 10, 20, 30, 40, 38, 36, 34, 0, 0, 0, 0]);
        roundtrip_u64s(&[u64::MAX, 0, 1]);
        roundtrip_u64s(&[1, 0, u64::MAX]);
        roundtrip_u64s(&vec![7; 5000]);
        let big: Vec<u64> = (0..6000u64).map(|i| i * 3 + (1 << 40)).collect();
        roundtrip_u64s(&big);
        let wild: Vec<u64> = (0..500u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        roundtrip_u64s(&wild);
    }

    #[test]
    fn literals_and_shifted_runs() {
        for n in [0usize, 3, 15, 16, 256, 4096] {
            let bytes: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mut code = Vec::new();
            literal(&mut code, &bytes);
            if n > 0 {
                assert_eq!(decode(&code, n).unwrap().0, bytes);
            }
        }
        let vals: Vec<u64> = (0..252u64).map(|i| (1000 + i) << 24 | (i % 3)).collect();
        let mut code = Vec::new();
        shifted_u64s(&mut code, &vals);
        assert_eq!(le64s(&decode(&code, 252 * 8).unwrap().0), vals);
    }

    /// Hand-assembled programs, one per instruction, as the table above (and
    /// 1.x's unpacker) define them.
    #[test]
    fn each_instruction() {
        let cases: &[(&[u8], &[u64])] = &[
            // SET width 1, width 2, width 8.
            (&[0x01, 42], &[42]),
            (&[0x02, 0x34, 0x12], &[0x1234]),
            (&[0x08, 1, 0, 0, 0, 0, 0, 0, 0x80], &[0x8000_0000_0000_0001]),
            // COUNT 3 x SET: the base three times.
            (&[0x73, 0x01, 9], &[9, 9, 9]),
            // SET 10, POS 2, COUNT 2 x NEG 1, CONST 2.
            (
                &[0x01, 10, 0x12, 0x72, 0x31, 0x52],
                &[10, 12, 11, 10, 10, 10],
            ),
            // POS_W 1000 (width 2), then NEG_W 1001 wraps below zero.
            (
                &[0x01, 0, 0x22, 0xE8, 0x03, 0x42, 0xE9, 0x03],
                &[0, 1000, u64::MAX],
            ),
            // CONST8 with a count of 1.
            (&[0x01, 7, 0x60, 1], &[7, 7]),
            // SHIFTED_RUN of 2: highs 5, 6 then lows 1, 2.
            (
                &[0xB0, 2, 0x01, 5, 0x11, 0x01, 1, 0x11],
                &[5 << 24 | 1, 6 << 24 | 2],
            ),
        ];
        for (code, want) in cases {
            let (out, used) = decode(code, want.len() * 8).unwrap();
            assert_eq!(
                (le64s(&out), used),
                (want.to_vec(), code.len()),
                "{code:x?}"
            );
        }
        // LIT and LIT_W copy bytes.
        assert_eq!(decode(&[0x93, 1, 2, 3], 3).unwrap().0, vec![1, 2, 3]);
        let mut lw = vec![0xA1, 20];
        lw.extend(0..20u8);
        assert_eq!(decode(&lw, 20).unwrap().0, (0..20u8).collect::<Vec<_>>());
        // COUNT8: 0x110 repetitions of POS 1.
        let (out, _) = decode(&[0x81, 0x10, 0x11], 0x110 * 8).unwrap();
        assert_eq!(le64s(&out).last(), Some(&0x110));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for code in [
            &[][..],
            &[0xF0],
            &[0x03, 1],
            &[0x9F],
            &[0x7F, 0x7F, 0x00, 1],
            &[0x2F, 1, 2],
        ] {
            assert!(decode(code, 4096).is_err());
        }
        // A literal longer than the block.
        let mut code = Vec::new();
        literal(&mut code, &[0u8; 5000]);
        assert!(decode(&code, 4096).is_err());
    }
}
