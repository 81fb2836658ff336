//! The first stage of every backup: refuses a dump that is empty or does not
//! start with its format's signature ([`SourceInfo::magic`]), before
//! anything is committed. A `pg_dump` that exits 0 without writing, or a
//! tool that prints an error page to stdout, fails the backup instead of
//! being stored as one.

use bytes::Bytes;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::source::SourceInfo;
use crate::store::ByteStream;

/// Bytes of a refused dump's start shown in the error.
const PREVIEW: usize = 32;

struct State {
    source: ByteStream,
    engine: String,
    format: String,
    magic: Vec<u8>,
    /// The first bytes seen (up to [`PREVIEW`] or the signature's length).
    head: Vec<u8>,
    /// Whether the signature was compared.
    checked: bool,
    size: u64,
}

impl State {
    fn rejected(&self, detail: String) -> Error {
        Error::InvalidDump {
            engine: self.engine.clone(),
            detail,
        }
    }

    /// Checks the signature once enough bytes arrived.
    fn check(&mut self, chunk: &Bytes) -> Result<()> {
        if self.checked {
            return Ok(());
        }
        let room = PREVIEW.max(self.magic.len()) - self.head.len();
        self.head.extend_from_slice(&chunk[..room.min(chunk.len())]);
        if self.head.len() < self.magic.len() {
            return Ok(());
        }
        self.checked = true;
        if !self.head.starts_with(&self.magic) {
            return Err(self.rejected(format!(
                "does not start with the {} signature \"{}\" but with \"{}\"; not committed",
                self.format,
                self.magic.escape_ascii(),
                self.head.escape_ascii()
            )));
        }
        Ok(())
    }

    /// At a clean end of the dump.
    fn finish(&self) -> Result<()> {
        if self.size == 0 {
            return Err(self.rejected(
                "the dump is empty (0 bytes, though the source reported success); not committed"
                    .into(),
            ));
        }
        if self.head.len() < self.magic.len() {
            return Err(self.rejected(format!(
                "the dump is {} bytes, shorter than the {} signature; not committed",
                self.size, self.format
            )));
        }
        Ok(())
    }
}

/// Passes `source` through, ending it with [`Error::InvalidDump`] instead
/// of cleanly if it is empty or does not start with `info.magic`.
pub(crate) fn check_dump(source: ByteStream, info: &SourceInfo) -> ByteStream {
    let state = State {
        source,
        engine: info.engine.clone(),
        format: info.format.clone(),
        magic: info.magic.clone().unwrap_or_default(),
        head: Vec::new(),
        checked: false,
        size: 0,
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.source.next().await {
            Some(Ok(chunk)) => {
                state.size += chunk.len() as u64;
                match state.check(&chunk) {
                    Ok(()) => Some((Ok(chunk), Some(state))),
                    Err(e) => Some((Err(e), None)),
                }
            }
            Some(Err(e)) => Some((Err(e), None)),
            None => state.finish().err().map(|e| (Err(e), None)),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(magic: Option<&[u8]>) -> SourceInfo {
        SourceInfo {
            engine: "postgres".into(),
            database: "db".into(),
            format: "pgdump".into(),
            extension: "dump".into(),
            magic: magic.map(<[u8]>::to_vec),
        }
    }

    async fn run(chunks: &[&'static [u8]], magic: Option<&[u8]>) -> Result<Vec<u8>> {
        let items: Vec<Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let mut out = check_dump(futures::stream::iter(items).boxed(), &info(magic));
        let mut all = Vec::new();
        while let Some(item) = out.next().await {
            all.extend_from_slice(&item?);
        }
        Ok(all)
    }

    #[tokio::test]
    async fn good_dumps_pass_unchanged() {
        assert_eq!(
            run(&[b"PG", b"", b"DMP rest", b"more"], Some(b"PGDMP"))
                .await
                .unwrap(),
            b"PGDMP restmore"
        );
        assert_eq!(run(&[b"x"], None).await.unwrap(), b"x");
    }

    #[tokio::test]
    async fn empty_short_and_foreign_dumps_are_refused() {
        for (chunks, magic, needle) in [
            (&[][..], None, "empty"),
            (&[&b""[..]][..], Some(&b"PGDMP"[..]), "empty"),
            (&[&b"PGD"[..]][..], Some(&b"PGDMP"[..]), "shorter"),
            (
                &[&b"pg_dump: error"[..]][..],
                Some(&b"PGDMP"[..]),
                "pg_dump: ",
            ),
            (&[&b"P"[..], &b"GDMQ"[..]][..], Some(&b"PGDMP"[..]), "PGDMQ"),
        ] {
            let err = run(chunks, magic).await.unwrap_err();
            assert!(matches!(err, Error::InvalidDump { .. }), "{err:?}");
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
    }
}
