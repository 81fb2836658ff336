//! Deterministic dump-like text: what `pg_dump` emits for a table of ids,
//! random md5 strings and timestamps, produced at GB/s.

use std::io::{self, Write};
use std::path::Path;

/// Rows per table before a new `COPY` block starts.
const ROWS_PER_TABLE: u64 = 1_000_000;
/// Bytes of rows generated per refill of the internal buffer.
const BATCH: usize = 64 * 1024;
/// `2025-06-01 00:00:00 UTC`: row `i` is stamped `i` seconds before it.
const BASE_EPOCH: i64 = 1_748_736_000;

/// An endless, deterministic stream of `COPY ... FROM stdin` text, the
/// shape of a plain `pg_dump` of
/// `SELECT i, md5(random()::text) a, md5(..) b, md5(..) c, now() - i * '1s'`:
///
/// ```text
/// COPY public.t0 (id, a, b, c, ts) FROM stdin;
/// 1 <TAB> 5f0e…(32 hex) <TAB> 9a1c… <TAB> 03bd… <TAB> 2025-05-31 23:59:59+00
/// ```
///
/// A new table starts every million rows. The hex columns carry 4 bits of
/// entropy per byte and the rest is regular, so zstd -3 shrinks it about
/// 2.4× and gzip -6 a little less, like a real dump of random text: not
/// trivially compressible, not incompressible. Same seed, same bytes.
///
/// ```
/// use backup_benches::DumpLikeGenerator;
/// let (mut a, mut b) = (vec![0u8; 10_000], vec![0u8; 10_000]);
/// DumpLikeGenerator::new(1).fill(&mut a);
/// DumpLikeGenerator::new(1).fill(&mut b);
/// assert_eq!(a, b);
/// assert!(a.starts_with(b"COPY public.t0 (id, a, b, c, ts) FROM stdin;\n1\t"));
/// ```
#[derive(Debug, Clone)]
pub struct DumpLikeGenerator {
    state: u64,
    next_id: u64,
    table: u64,
    pending: Vec<u8>,
    offset: usize,
}

impl DumpLikeGenerator {
    /// A generator whose random columns are seeded by `seed`.
    pub fn new(seed: u64) -> Self {
        DumpLikeGenerator {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
            next_id: 1,
            table: 0,
            pending: Vec::with_capacity(BATCH + 4096),
            offset: 0,
        }
    }

    /// Fills `out` completely with the next bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            if self.offset == self.pending.len() {
                self.refill();
            }
            let n = (out.len() - done).min(self.pending.len() - self.offset);
            out[done..done + n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
            self.offset += n;
            done += n;
        }
    }

    fn refill(&mut self) {
        self.pending.clear();
        self.offset = 0;
        while self.pending.len() < BATCH {
            let row_in_table = (self.next_id - 1) % ROWS_PER_TABLE;
            if row_in_table == 0 {
                if self.next_id > 1 {
                    self.pending.extend_from_slice(b"\\.\n\n\n");
                }
                writeln!(
                    self.pending,
                    "COPY public.t{} (id, a, b, c, ts) FROM stdin;",
                    self.table
                )
                .expect("writing to a Vec");
                self.table += 1;
            }
            self.row();
        }
    }

    fn row(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        push_decimal(&mut self.pending, id, 0);
        for _ in 0..3 {
            self.pending.push(b'\t');
            let (a, b) = (self.random(), self.random());
            for byte in a.to_le_bytes().into_iter().chain(b.to_le_bytes()) {
                self.pending.extend_from_slice(&HEX[byte as usize]);
            }
        }
        self.pending.push(b'\t');
        push_timestamp(&mut self.pending, BASE_EPOCH - id as i64);
        self.pending.push(b'\n');
    }

    /// wyrand: fast and good enough for filler.
    fn random(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state).wrapping_mul(u128::from(self.state ^ 0xe703_7ed1_a0b4_28db));
        ((t >> 64) as u64) ^ (t as u64)
    }
}

static HEX: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [digits[i >> 4], digits[i & 15]];
        i += 1;
    }
    table
};

/// Appends `n` in decimal, zero-padded to `width` digits.
fn push_decimal(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while digits.len() - i < width {
        i -= 1;
        digits[i] = b'0';
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `YYYY-MM-DD HH:MM:SS+00` for a Unix time.
fn push_timestamp(out: &mut Vec<u8>, epoch: i64) {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400) as u64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    push_decimal(out, year as u64, 4);
    out.push(b'-');
    push_decimal(out, month as u64, 2);
    out.push(b'-');
    push_decimal(out, day as u64, 2);
    out.push(b' ');
    push_decimal(out, secs / 3600, 2);
    out.push(b':');
    push_decimal(out, secs / 60 % 60, 2);
    out.push(b':');
    push_decimal(out, secs % 60, 2);
    out.extend_from_slice(b"+00");
}

/// Writes `len` bytes of [`DumpLikeGenerator`] output to a new file at
/// `path` and syncs it, so later reads come from the page cache without
/// write-back competing with the measurement.
pub fn write_dump_like(path: &Path, len: u64, seed: u64) -> io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let mut generator = DumpLikeGenerator::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        generator.fill(&mut buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_rows() {
        let mut out = Vec::new();
        push_timestamp(&mut out, BASE_EPOCH - 1);
        assert_eq!(out, b"2025-05-31 23:59:59+00");
        out.clear();
        push_timestamp(&mut out, 951_782_400); // 2000-02-29
        assert_eq!(out, b"2000-02-29 00:00:00+00");

        let mut text = vec![0u8; 300_000];
        DumpLikeGenerator::new(3).fill(&mut text);
        let text = String::from_utf8(text).unwrap();
        let second = text.lines().nth(2).unwrap();
        let fields: Vec<&str> = second.split('\t').collect();
        assert_eq!(fields.len(), 5, "{second}");
        assert_eq!(fields[0], "2");
        assert!(fields[1..4].iter().all(|f| f.len() == 32));
        assert_eq!(fields[4], "2025-05-31 23:59:58+00");
    }

    #[test]
    fn fill_is_independent_of_buffer_sizes() {
        let mut whole = vec![0u8; 200_000];
        DumpLikeGenerator::new(9).fill(&mut whole);
        let mut g = DumpLikeGenerator::new(9);
        let mut pieces = Vec::new();
        for size in [1usize, 7, 65_536, 100_000, 34_456] {
            let mut buf = vec![0u8; size];
            g.fill(&mut buf);
            pieces.extend_from_slice(&buf);
        }
        assert_eq!(pieces, whole);
    }
}
