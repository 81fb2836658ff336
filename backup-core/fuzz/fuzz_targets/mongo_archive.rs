//! The push-based mongodump archive reader and the lister on arbitrary
//! bytes in arbitrary pieces: errors, never panics; the reader never holds
//! more than what was fed; a failed reader stays failed. Also the
//! collection metadata parser on the prelude's metadata strings.
//!
//! Input: byte 0 is the piece size (0: all at once), the rest the archive.
#![no_main]

use backup_mongo::archive::{ArchiveReader, ArchiveEvent, Lister};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let piece = if split == 0 {
        body.len().max(1)
    } else {
        split as usize
    };
    let mut reader = ArchiveReader::new();
    let mut fed = 0usize;
    let mut failed = false;
    'feed: for chunk in body.chunks(piece) {
        reader.feed(chunk);
        fed += chunk.len();
        loop {
            assert!(reader.buffered() <= fed);
            assert!(reader.position() as usize + reader.buffered() == fed);
            match reader.next_event() {
                Ok(None) => break,
                Ok(Some(ArchiveEvent::Prelude(prelude))) => {
                    for c in &prelude.collections {
                        let _ = c.parse_metadata();
                    }
                }
                Ok(Some(_)) => {}
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    if failed {
        assert!(reader.next_event().is_err(), "an error is final");
    } else {
        let _ = reader.finish();
    }
    let mut lister = Lister::new();
    if lister.feed(body).is_ok() {
        let _ = lister.finish();
    }
});
