//! `PackIndex::decode` on arbitrary bytes, resealed so the fuzzer reaches
//! the parser behind the checksum, and on the bytes as given (a damaged
//! seal is always an error). What decodes encodes and decodes to the same
//! index, and every entry's end is computable.
#![no_main]

use backup_core::fuzzing::{PackIndex, check_pack_header, reseal_pack_index};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = PackIndex::decode(data);
    let _ = check_pack_header(data);
    let mut sealed = data.to_vec();
    reseal_pack_index(&mut sealed);
    if let Ok(index) = PackIndex::decode(&sealed) {
        for e in &index.entries {
            assert!(
                e.offset.checked_add(u64::from(e.stored_len)).is_some(),
                "entry end overflows: {e:?}"
            );
        }
        let again = PackIndex::decode(&index.encode()).expect("an encoded index decodes");
        assert_eq!(again, index);
    }
});
