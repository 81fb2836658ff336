//! The constants of the archive's framing.

/// The four bytes every archive starts with (`0x8199E26D` little-endian).
pub const MAGIC: [u8; 4] = 0x8199_E26D_u32.to_le_bytes();

/// The four bytes that end the prelude and every block.
pub const TERMINATOR: [u8; 4] = [0xFF; 4];

/// The only archive format version mongodump has ever written.
pub const FORMAT_VERSION: &str = "0.1";

/// The largest BSON document (or header) accepted, as in mongo-tools.
pub const MAX_DOCUMENT_SIZE: usize = 16 * 1024 * 1024;

/// The smallest possible BSON document: a length and a NUL byte.
pub(crate) const MIN_DOCUMENT_SIZE: usize = 5;
