//! Property tests of the chunk store's binary formats (fuzz targets:
//! `chunk_list`, `pack_index`): generated chunk lists and pack indexes
//! round trip; truncated, extended or flipped input is an error, never a
//! panic or an allocation sized by the input's claims.

use backup_core::fuzzing::{
    IndexEntry, ListEntry, PackHeader, PackIndex, encode_chunk_list, read_chunk_list,
    reseal_pack_index,
};
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use proptest::prelude::*;

fn pieces(data: &[u8], split: usize) -> Vec<Bytes> {
    if split == 0 {
        return vec![Bytes::copy_from_slice(data)];
    }
    data.chunks(split).map(Bytes::copy_from_slice).collect()
}

fn entries() -> impl Strategy<Value = Vec<ListEntry>> {
    prop::collection::vec((any::<[u8; 32]>(), any::<u32>()), 0..40)
}

prop_compose! {
    fn pack_index()(
        pack in "[0-9a-f]{32}",
        size in any::<u64>(),
        compression in prop::sample::select(vec!["none", "zstd", "gzip", "ünïcode\"\\"]),
        level in proptest::option::of(any::<i32>()),
        recipients in prop::collection::vec("age1[a-z0-9]{8,12}", 0..3),
        secs in 0i64..7_258_118_400,
        nanos in 0u32..1_000_000_000,
        written_by in "\\PC{0,20}",
        raw in prop::collection::vec((any::<[u8; 32]>(), any::<u32>(), any::<u32>(), any::<u32>()), 0..30),
    ) -> PackIndex {
        let mut offset = 8u64;
        let entries = raw
            .into_iter()
            .map(|(id, gap, stored_len, raw_len)| {
                let e = IndexEntry { id, offset, stored_len, raw_len };
                offset = offset + u64::from(stored_len) + u64::from(gap % 3);
                e
            })
            .collect();
        PackIndex {
            header: PackHeader {
                pack,
                size,
                compression: compression.to_string(),
                level,
                recipients,
                created_at: Utc.timestamp_opt(secs, nanos).unwrap(),
                written_by,
            },
            entries,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn chunk_lists_round_trip_in_any_split(list in entries(), split in 0usize..80) {
        let bytes = encode_chunk_list(&list);
        let (read, digests) = read_chunk_list(pieces(&bytes, split)).unwrap();
        prop_assert_eq!(read, list);
        prop_assert_eq!(digests.size, bytes.len() as u64);
    }

    #[test]
    fn damaged_chunk_lists_are_errors(list in entries(), split in 0usize..80, at in any::<prop::sample::Index>(), how in 0u8..3, byte in any::<u8>()) {
        let mut bytes = encode_chunk_list(&list).to_vec();
        let i = at.index(bytes.len());
        match how {
            // Truncation inside the header or an entry.
            0 => {
                bytes.truncate(i);
                let expect_ok = i >= 8 && (i - 8) % 36 == 0;
                let result = read_chunk_list(pieces(&bytes, split));
                prop_assert_eq!(result.is_ok(), expect_ok, "cut at {}", i);
            }
            // Stray bytes after the last entry.
            1 => {
                bytes.extend(std::iter::repeat_n(byte, i % 35 + 1));
                prop_assert!(read_chunk_list(pieces(&bytes, split)).is_err());
            }
            // A flipped byte: an error in the header, else a different list
            // that the manifest's digests (checked by the caller) refuse.
            _ => {
                bytes[i] ^= byte | 1;
                match read_chunk_list(pieces(&bytes, split)) {
                    Ok((read, digests)) => {
                        prop_assert!(i >= 8);
                        prop_assert_ne!(read, list);
                        prop_assert_eq!(digests.size, bytes.len() as u64);
                    }
                    Err(_) => prop_assert!(i < 8),
                }
            }
        }
    }

    #[test]
    fn arbitrary_chunk_lists_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), split in 0usize..50, header in any::<bool>()) {
        let mut data = if header { encode_chunk_list(&[]).to_vec() } else { Vec::new() };
        data.extend_from_slice(&bytes);
        if let Ok((read, _)) = read_chunk_list(pieces(&data, split)) {
            prop_assert_eq!(&encode_chunk_list(&read)[..], &data[..]);
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn pack_indexes_round_trip(index in pack_index()) {
        let bytes = index.encode();
        prop_assert_eq!(PackIndex::decode(&bytes).unwrap(), index);
    }

    #[test]
    fn damaged_pack_indexes_are_errors(index in pack_index(), at in any::<prop::sample::Index>(), byte in 1u8..=255, cut in any::<bool>()) {
        let mut bytes = index.encode().to_vec();
        let i = at.index(bytes.len());
        if cut { bytes.truncate(i) } else { bytes[i] ^= byte }
        prop_assert!(PackIndex::decode(&bytes).is_err());
    }

    #[test]
    fn resealed_damage_is_an_error_or_a_sane_index(index in pack_index(), at in any::<prop::sample::Index>(), byte in 1u8..=255, cut in any::<bool>()) {
        // Damage that a writer with a valid seal could produce: the parser
        // behind the checksum must still refuse or return a usable index.
        let mut bytes = index.encode().to_vec();
        let i = at.index(bytes.len() - 32);
        if cut {
            bytes.drain(i..bytes.len() - 32);
        } else {
            bytes[i] ^= byte;
        }
        reseal_pack_index(&mut bytes);
        if let Ok(decoded) = PackIndex::decode(&bytes) {
            for e in &decoded.entries {
                prop_assert!(e.offset.checked_add(u64::from(e.stored_len)).is_some(), "{:?}", e);
            }
        }
    }

    #[test]
    fn arbitrary_pack_indexes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..400), prefix in any::<bool>()) {
        if prefix && bytes.len() >= 12 {
            bytes[..4].copy_from_slice(b"DBPI");
            bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        }
        reseal_pack_index(&mut bytes);
        let _ = PackIndex::decode(&bytes);
    }
}

/// An index that claims 2^32 - 1 entries or a 4 GiB header in a few bytes
/// is refused before anything of that size is allocated.
#[test]
fn huge_declared_counts_are_refused() {
    let mut header_claim = b"DBPI".to_vec();
    header_claim.extend_from_slice(&1u32.to_le_bytes());
    header_claim.extend_from_slice(&u32::MAX.to_le_bytes());
    header_claim.extend_from_slice(&[0u8; 40]);
    reseal_pack_index(&mut header_claim);
    assert!(PackIndex::decode(&header_claim).is_err());

    let index = PackIndex {
        header: PackHeader {
            pack: "00".repeat(16),
            size: 8,
            compression: "none".into(),
            level: None,
            recipients: vec![],
            created_at: Utc.timestamp_opt(0, 0).unwrap(),
            written_by: "t".into(),
        },
        entries: vec![],
    };
    let mut bytes = index.encode().to_vec();
    let count_at = bytes.len() - 32 - 4;
    bytes[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal_pack_index(&mut bytes);
    assert!(PackIndex::decode(&bytes).is_err());
}

/// An entry whose offset plus length does not fit in a u64 (the end that
/// restores, checks and GC compute) is refused by the parser.
#[test]
fn entries_whose_end_overflows_are_refused() {
    let index = PackIndex {
        header: PackHeader {
            pack: "00".repeat(16),
            size: u64::MAX,
            compression: "none".into(),
            level: None,
            recipients: vec![],
            created_at: Utc.timestamp_opt(0, 0).unwrap(),
            written_by: "t".into(),
        },
        entries: vec![IndexEntry {
            id: [7; 32],
            offset: u64::MAX - 3,
            stored_len: 4,
            raw_len: 1,
        }],
    };
    assert!(PackIndex::decode(&index.encode()).is_err());
}
