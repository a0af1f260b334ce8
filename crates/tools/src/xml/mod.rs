//! The XML interchange format of `thin_dump` / `thin_restore` (FORMAT.md §8):
//! [`XmlWriter`] writes it byte for byte as thin-provisioning-tools 1.x
//! does, [`HumanReadableWriter`] writes 1.x's `-f human_readable` text, and
//! [`read`] / [`read_file`] stream XML (both the 0.9.0 form and the 1.x
//! form with `<def>` / `<ref>`) into any [`crate::ir::MetadataVisitor`].

mod human;
mod reader;
mod writer;

pub use human::HumanReadableWriter;
pub use reader::{read, read_file, scan_def_names, XmlError};
pub use writer::XmlWriter;

/// Appends the decimal form of `v` (no allocation).
#[inline]
pub(crate) fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends `s` with the five XML special characters escaped.
pub(crate) fn push_escaped(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'&' => buf.extend_from_slice(b"&amp;"),
            b'<' => buf.extend_from_slice(b"&lt;"),
            b'>' => buf.extend_from_slice(b"&gt;"),
            b'"' => buf.extend_from_slice(b"&quot;"),
            b'\'' => buf.extend_from_slice(b"&apos;"),
            _ => buf.push(b),
        }
    }
}

/// Output buffers are written out in pieces of about this size.
pub(crate) const FLUSH_AT: usize = 1 << 20;

/// The error for a failed write of the output.
pub(crate) fn output_error(e: std::io::Error) -> crate::Error {
    crate::Error::msg(format!("Output error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_escapes() {
        let mut b = Vec::new();
        for v in [0u64, 7, 10, 99, 100, 1234567890, u64::MAX] {
            b.clear();
            push_u64(&mut b, v);
            assert_eq!(b, v.to_string().as_bytes());
        }
        b.clear();
        push_escaped(&mut b, "a<b>&\"'");
        assert_eq!(b, b"a&lt;b&gt;&amp;&quot;&apos;");
    }
}
