//! The streaming chunk-list reader on arbitrary bytes delivered in
//! arbitrary pieces: an error or the entries; what it accepts re-encodes to
//! the same bytes, and the digests cover every byte.
//!
//! Input: byte 0 is the piece size (0: all at once), the rest the object.
#![no_main]

use backup_core::fuzzing::{encode_chunk_list, read_chunk_list};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let pieces: Vec<Bytes> = match split {
        0 => vec![Bytes::copy_from_slice(body)],
        n => body
            .chunks(n as usize)
            .map(Bytes::copy_from_slice)
            .collect(),
    };
    if let Ok((entries, digests)) = read_chunk_list(pieces) {
        assert_eq!(&encode_chunk_list(&entries)[..], body);
        assert_eq!(digests.size, body.len() as u64);
    }
});
