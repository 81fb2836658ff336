//! CRC-64/XZ, the checksum mongodump stores per namespace.

use std::fmt;

use crc::{CRC_64_XZ, Crc, Digest, Table};

/// CRC-64/XZ (ECMA-182 polynomial, reflected, all-ones init and xor-out) is
/// what Go's `crc64.New(crc64.MakeTable(crc64.ECMA))` computes. The table
/// (slice-by-16) is built at compile time by the `crc` crate.
static CRC64_XZ: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_XZ);

/// An incremental CRC-64/XZ, as mongodump computes over a namespace's
/// documents.
///
/// ```
/// use backup_mongo::archive::{Crc64, crc64};
///
/// let mut crc = Crc64::new();
/// crc.update(b"1234");
/// crc.update(b"56789");
/// assert_eq!(crc.value(), 0x995D_C9BB_DF19_39FA);
/// assert_eq!(crc64(b"123456789"), crc.value());
/// ```
#[derive(Clone)]
pub struct Crc64 {
    digest: Digest<'static, u64, Table<16>>,
}

impl Crc64 {
    /// A checksum over no bytes yet (its value is 0).
    pub fn new() -> Self {
        Crc64 {
            digest: CRC64_XZ.digest(),
        }
    }

    /// Adds `bytes` to the checksum.
    pub fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
    }

    /// The checksum of everything added so far; more bytes may follow.
    pub fn value(&self) -> u64 {
        self.digest.clone().finalize()
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Crc64({:#018x})", self.value())
    }
}

/// CRC-64/XZ of `bytes` in one call.
pub fn crc64(bytes: &[u8]) -> u64 {
    CRC64_XZ.checksum(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's `hash/crc64` written out bit by bit with the reversed ECMA
    /// polynomial, independent of the `crc` crate.
    fn go_style_crc64(data: &[u8]) -> u64 {
        const ECMA_REVERSED: u64 = 0xC96C_5795_D787_0F42;
        let mut crc = !0u64;
        for &byte in data {
            crc ^= u64::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ ECMA_REVERSED
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn check_value_of_crc_64_xz() {
        assert_eq!(crc64(b"123456789"), 0x995D_C9BB_DF19_39FA);
        assert_eq!(go_style_crc64(b"123456789"), 0x995D_C9BB_DF19_39FA);
    }

    #[test]
    fn empty_input_is_zero() {
        assert_eq!(crc64(b""), 0);
        assert_eq!(Crc64::new().value(), 0);
    }

    #[test]
    fn incremental_matches_one_shot_and_bitwise_reference() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let data: Vec<u8> = (0..10_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let mut crc = Crc64::new();
        for piece in data.chunks(37) {
            crc.update(piece);
        }
        assert_eq!(crc.value(), crc64(&data));
        assert_eq!(crc.value(), go_style_crc64(&data));
    }

    #[test]
    fn value_does_not_consume_the_state() {
        let mut crc = Crc64::new();
        crc.update(b"12345");
        let _ = crc.value();
        crc.update(b"6789");
        assert_eq!(crc.value(), 0x995D_C9BB_DF19_39FA);
    }
}
