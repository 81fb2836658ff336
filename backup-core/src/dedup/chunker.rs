//! Content-defined chunking of a byte stream with FastCDC (2020).
//!
//! Cut points depend only on the bytes within `max` of them, so an edit in
//! the middle of a dump changes the chunks around it and leaves the others
//! (and their ids) as they were. Chunks are zero-copy slices of one buffer.

use bytes::{Bytes, BytesMut};
use fastcdc::v2020::{Normalization, cut, select_masks};
use futures::StreamExt;

use crate::error::Result;
use crate::store::ByteStream;

/// Chunk size bounds, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkSizes {
    pub(crate) min: usize,
    pub(crate) avg: usize,
    pub(crate) max: usize,
}

impl ChunkSizes {
    /// `fastcdc2020/{min}/{avg}/{max}`, as recorded in manifests.
    pub(crate) fn describe(&self) -> String {
        format!("fastcdc2020/{}/{}/{}", self.min, self.avg, self.max)
    }
}

/// Cuts a stream into content-defined chunks.
pub(crate) struct Chunker {
    source: ByteStream,
    buf: BytesMut,
    sizes: ChunkSizes,
    masks: (u64, u64),
    ended: bool,
}

impl Chunker {
    pub(crate) fn new(source: ByteStream, sizes: ChunkSizes) -> Self {
        Chunker {
            source,
            buf: BytesMut::with_capacity(sizes.max * 2),
            sizes,
            masks: select_masks(sizes.avg, Normalization::Level1),
            ended: false,
        }
    }

    /// The next chunk, `None` at the end of the stream. Errors of the
    /// source are passed on.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        while !self.ended && self.buf.len() < self.sizes.max {
            match self.source.next().await {
                Some(data) => self.buf.extend_from_slice(&data?),
                None => self.ended = true,
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let (mask_s, mask_l) = self.masks;
        let window = self.buf.len().min(self.sizes.max);
        let (_, end) = cut(
            &self.buf[..window],
            self.sizes.min,
            self.sizes.avg,
            self.sizes.max,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
        );
        let end = end.clamp(1, window);
        Ok(Some(self.buf.split_to(end).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: ChunkSizes = ChunkSizes {
        min: 2048,
        avg: 8192,
        max: 32768,
    };

    fn data(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    async fn chunks(input: &[u8], piece: usize) -> Vec<Bytes> {
        let pieces: Vec<Result<Bytes>> = input
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut chunker = Chunker::new(futures::stream::iter(pieces).boxed(), SIZES);
        let mut out = Vec::new();
        while let Some(c) = chunker.next_chunk().await.unwrap() {
            out.push(c);
        }
        out
    }

    #[tokio::test]
    async fn cuts_do_not_depend_on_how_the_stream_is_split() {
        let input = data(500_000, 1);
        let a = chunks(&input, 1_000_000).await;
        let b = chunks(&input, 777).await;
        assert_eq!(a, b);
        assert_eq!(a.concat(), input);
        assert!(a.iter().all(|c| c.len() <= SIZES.max));
        assert!(a[..a.len() - 1].iter().all(|c| c.len() >= SIZES.min));
        let avg = input.len() / a.len();
        assert!((4000..16000).contains(&avg), "average chunk {avg}");
    }

    #[tokio::test]
    async fn an_insertion_changes_only_nearby_chunks() {
        let input = data(400_000, 2);
        let mut edited = input.clone();
        edited.splice(200_000..200_000, b"inserted".iter().copied());
        let a = chunks(&input, 4096).await;
        let b = chunks(&edited, 4096).await;
        let shared = b.iter().filter(|c| a.contains(c)).count();
        assert!(
            shared + 3 >= a.len(),
            "{shared} of {} chunks survive",
            a.len()
        );
    }

    #[tokio::test]
    async fn empty_input_has_no_chunks() {
        assert!(chunks(&[], 10).await.is_empty());
    }
}
