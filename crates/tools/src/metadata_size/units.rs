//! Size units as the 1.x tools spell them: parsing `-u UNIT` and sizes such
//! as `64k` or `1t` (a number defaults to sectors), the long and one-letter
//! names used by `thin_metadata_size`, and the compact sizes of `thin_ls`'s
//! unit-less columns (`384KiB`).
//!
//! Spellings reproduce thin-provisioning-tools 1.x exactly, quirks included:
//! the tebibyte's long name is "terabyte" and its short form "Tib".

use std::fmt;
use std::str::FromStr;

/// A unit of size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Byte,
    Sector,
    Kibibyte,
    Mebibyte,
    Gibibyte,
    Tebibyte,
    Pebibyte,
    Exbibyte,
    Kilobyte,
    Megabyte,
    Gigabyte,
    Terabyte,
    Petabyte,
    Exabyte,
}

/// Every unit with its accepted spellings (long name, short form, letter)
/// and its size in bytes.
const TABLE: &[(Unit, [&str; 3], u64)] = &[
    (Unit::Byte, ["byte", "b", "b"], 1),
    (Unit::Sector, ["sector", "s", "s"], 512),
    (Unit::Kibibyte, ["kibibyte", "KiB", "k"], 1 << 10),
    (Unit::Mebibyte, ["mebibyte", "MiB", "m"], 1 << 20),
    (Unit::Gibibyte, ["gibibyte", "GiB", "g"], 1 << 30),
    (Unit::Tebibyte, ["tebibyte", "TiB", "t"], 1 << 40),
    (Unit::Pebibyte, ["pebibyte", "PiB", "p"], 1 << 50),
    (Unit::Exbibyte, ["exbibyte", "EiB", "e"], 1 << 60),
    (Unit::Kilobyte, ["kilobyte", "kB", "K"], 1_000),
    (Unit::Megabyte, ["megabyte", "MB", "M"], 1_000_000),
    (Unit::Gigabyte, ["gigabyte", "GB", "G"], 1_000_000_000),
    (Unit::Terabyte, ["terabyte", "TB", "T"], 1_000_000_000_000),
    (
        Unit::Petabyte,
        ["petabyte", "PB", "P"],
        1_000_000_000_000_000,
    ),
    (
        Unit::Exabyte,
        ["exabyte", "EB", "E"],
        1_000_000_000_000_000_000,
    ),
];

fn row(u: Unit) -> &'static (Unit, [&'static str; 3], u64) {
    TABLE
        .iter()
        .find(|r| r.0 == u)
        .expect("every unit is in the table")
}

impl Unit {
    /// Bytes per unit.
    pub fn bytes(self) -> u64 {
        row(self).2
    }

    /// The long name `thin_metadata_size` prints (before its plural "s").
    /// 1.x prints "terabyte" for the tebibyte; kept for compatibility.
    pub fn long_name(self) -> &'static str {
        match self {
            Unit::Tebibyte => "terabyte",
            u => row(u).1[0],
        }
    }

    /// The one-letter form (`-n=short`): lower case for binary multiples,
    /// upper case for decimal ones.
    pub fn letter(self) -> &'static str {
        row(self).1[2]
    }

    /// The short suffix of `thin_ls`'s unit-less columns ("KiB"; 1.x writes
    /// "Tib" for the tebibyte).
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Tebibyte => "Tib",
            Unit::Byte => "b",
            Unit::Sector => "s",
            u => row(u).1[1],
        }
    }
}

/// A unit that is not one of the accepted spellings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadUnit;

impl fmt::Display for BadUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Invalid unit specifier")
    }
}

impl std::error::Error for BadUnit {}

impl FromStr for Unit {
    type Err = BadUnit;

    fn from_str(s: &str) -> Result<Self, BadUnit> {
        // Accepted: the long name, the short form and the letter.  "b" and
        // "s" are all three at once.
        TABLE
            .iter()
            .find(|r| r.1.contains(&s))
            .map(|r| r.0)
            .ok_or(BadUnit)
    }
}

/// A size given on the command line: a count of units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub count: u64,
    pub unit: Unit,
}

impl Size {
    /// The size in bytes (construction guarantees it fits).
    pub fn bytes(&self) -> u64 {
        self.count * self.unit.bytes()
    }
}

impl FromStr for Size {
    type Err = String;

    /// `NUMBER[UNIT]`; without a unit the number counts sectors.
    fn from_str(s: &str) -> Result<Self, String> {
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let count: u64 = num
            .parse()
            .map_err(|e: std::num::ParseIntError| e.to_string())?;
        let unit = if unit.is_empty() {
            Unit::Sector
        } else {
            unit.parse().map_err(|e: BadUnit| e.to_string())?
        };
        if count > u64::MAX / unit.bytes() {
            return Err("value out of bounds".into());
        }
        Ok(Size { count, unit })
    }
}

/// `bytes` in the largest binary unit that keeps the number at most 8192
/// (rounded to the nearest), with its suffix: `thin_ls`'s MAPPED, EXCLUSIVE,
/// SHARED and HIGHEST_MAPPED columns.  0 is "0b".
pub fn compact_size(bytes: u64) -> String {
    const UNITS: [Unit; 7] = [
        Unit::Byte,
        Unit::Kibibyte,
        Unit::Mebibyte,
        Unit::Gibibyte,
        Unit::Tebibyte,
        Unit::Pebibyte,
        Unit::Exbibyte,
    ];
    // Start where the number is at least 1024 (if it can be), then step up
    // once more if it is still above 8192.
    let mut i = if bytes == 0 {
        0
    } else {
        ((63 - bytes.leading_zeros()) / 10).saturating_sub(1) as usize
    };
    let mut n = bytes >> (10 * i);
    if n > 8192 {
        n = (n as f64 / 1024.0).round() as u64;
        i += 1;
    }
    format!("{n}{}", UNITS[i].suffix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_units_and_sizes() {
        assert_eq!("k".parse::<Unit>(), Ok(Unit::Kibibyte));
        assert_eq!("KiB".parse::<Unit>(), Ok(Unit::Kibibyte));
        assert_eq!("K".parse::<Unit>(), Ok(Unit::Kilobyte));
        assert_eq!("kB".parse::<Unit>(), Ok(Unit::Kilobyte));
        assert_eq!("sector".parse::<Unit>(), Ok(Unit::Sector));
        assert!("kb".parse::<Unit>().is_err());
        assert_eq!("1024".parse::<Size>().unwrap().bytes(), 1024 * 512);
        assert_eq!("64k".parse::<Size>().unwrap().bytes(), 65536);
        assert_eq!("1t".parse::<Size>().unwrap().bytes(), 1 << 40);
        assert!("15e".parse::<Size>().is_ok());
        assert!("16e".parse::<Size>().is_err());
        assert!("36028797018963968".parse::<Size>().is_err());
        assert!("18446744073709551616b".parse::<Size>().is_err());
        assert!("x".parse::<Size>().is_err());
        assert!("".parse::<Size>().is_err());
        assert!("12q".parse::<Size>().is_err());
    }

    #[test]
    fn compact_sizes_as_1x() {
        assert_eq!(compact_size(0), "0b");
        assert_eq!(compact_size(1), "1b");
        assert_eq!(compact_size(8192), "8192b");
        assert_eq!(compact_size(8193), "8KiB");
        assert_eq!(compact_size(393216), "384KiB");
        assert_eq!(compact_size(8 << 20), "8192KiB");
        assert_eq!(compact_size((8 << 20) + 1024), "8MiB");
        assert_eq!(compact_size(8 * 1024 + 512), "9KiB");
        assert_eq!(compact_size(1023 * 1024 + 512), "1024KiB");
        assert_eq!(compact_size(8 << 40), "8192GiB");
        assert_eq!(compact_size(9 << 40), "9Tib");
        assert_eq!(compact_size(u64::MAX), "16EiB");
    }
}
