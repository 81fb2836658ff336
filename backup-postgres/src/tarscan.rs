//! A streaming look at the tar archive `pg_basebackup` writes, as its
//! bytes pass on their way to the store: headers checked (checksum, octal
//! or base-256 sizes, padding, end marker), `backup_label` captured whole
//! (it is tiny) and of `backup_manifest` only the head and the last 64
//! KiB, so memory stays flat whatever the cluster's size.

/// Bytes of a tar block (headers, padding unit).
const BLOCK: usize = 512;
/// Most bytes of `backup_label` kept; a bigger one is refused.
const MAX_LABEL: u64 = 64 * 1024;
/// Bytes of the start of `backup_manifest` kept (its version and
/// `System-Identifier` come first).
const MANIFEST_HEAD: usize = 4 * 1024;
/// Bytes of the end of `backup_manifest` kept (its `WAL-Ranges` come
/// last).
const MANIFEST_TAIL: usize = 64 * 1024;

/// What the scan kept of the archive.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Captured {
    /// `backup_label`, whole.
    pub(crate) label: Vec<u8>,
    /// The first bytes of `backup_manifest`.
    pub(crate) manifest_head: Vec<u8>,
    /// The last bytes of `backup_manifest`.
    pub(crate) manifest_tail: Vec<u8>,
}

/// Which member's data is passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Label,
    Manifest,
    Other,
}

#[derive(Debug)]
enum State {
    /// Filling a header block (`filled` bytes of `header` so far).
    Header,
    /// In a member's data: `left` bytes of data, then `padding`.
    Data {
        member: Member,
        left: u64,
        padding: u64,
    },
    /// After the first all-zero block: the second one is being read.
    EndMarker,
    /// After the end marker: only zero padding may follow.
    Done,
}

/// The scanner: feed it every chunk in order, then [`TarScan::finish`].
#[derive(Debug)]
pub(crate) struct TarScan {
    state: State,
    header: [u8; BLOCK],
    filled: usize,
    offset: u64,
    label: Option<Vec<u8>>,
    manifest_head: Vec<u8>,
    manifest_tail: Vec<u8>,
    seen_manifest: bool,
}

impl TarScan {
    /// A scanner at the start of an archive.
    pub(crate) fn new() -> Self {
        TarScan {
            state: State::Header,
            header: [0; BLOCK],
            filled: 0,
            offset: 0,
            label: None,
            manifest_head: Vec::new(),
            manifest_tail: Vec::new(),
            seen_manifest: false,
        }
    }

    /// Looks at the next bytes of the archive; an error says what is
    /// malformed and where.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        self.feed_with(data, &mut |_| {})
    }

    /// Bytes of the archive looked at so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// `backup_label` once it passed whole (`None` before, and for an
    /// archive that has none).
    pub(crate) fn label(&self) -> Option<&[u8]> {
        match self.state {
            State::Data {
                member: Member::Label,
                ..
            } => None,
            _ => self.label.as_deref(),
        }
    }

    /// Like [`TarScan::feed`], handing every byte of `backup_manifest` to
    /// `manifest` as it passes (in order, in slices of `data`).
    pub(crate) fn feed_with(
        &mut self,
        mut data: &[u8],
        manifest: &mut dyn FnMut(&[u8]),
    ) -> Result<(), String> {
        while !data.is_empty() {
            match &mut self.state {
                State::Header | State::EndMarker => {
                    let take = (BLOCK - self.filled).min(data.len());
                    self.header[self.filled..self.filled + take].copy_from_slice(&data[..take]);
                    self.filled += take;
                    data = &data[take..];
                    if self.filled == BLOCK {
                        self.filled = 0;
                        self.block()?;
                        self.offset += BLOCK as u64;
                    }
                }
                State::Data {
                    member,
                    left,
                    padding,
                } => {
                    if *left > 0 {
                        let take = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                        let (bytes, rest) = data.split_at(take);
                        let member = *member;
                        *left -= take as u64;
                        if member == Member::Manifest {
                            manifest(bytes);
                        }
                        self.capture(member, bytes);
                        self.offset += take as u64;
                        data = rest;
                    } else {
                        let take = usize::try_from(*padding)
                            .unwrap_or(usize::MAX)
                            .min(data.len());
                        *padding -= take as u64;
                        self.offset += take as u64;
                        data = &data[take..];
                    }
                    if let State::Data {
                        left: 0,
                        padding: 0,
                        ..
                    } = self.state
                    {
                        self.state = State::Header;
                    }
                }
                State::Done => {
                    if let Some(at) = data.iter().position(|&b| b != 0) {
                        return Err(format!(
                            "data after the end of the tar archive (byte {})",
                            self.offset + at as u64
                        ));
                    }
                    self.offset += data.len() as u64;
                    data = &[];
                }
            }
        }
        Ok(())
    }

    /// The archive ended: checks it ended cleanly and returns what was
    /// kept.
    pub(crate) fn finish(self) -> Result<Captured, String> {
        if !matches!(self.state, State::Done) || self.filled != 0 {
            return Err(format!(
                "the tar archive is truncated (it ends at byte {} without its end marker)",
                self.offset + self.filled as u64
            ));
        }
        let label = self
            .label
            .ok_or("the archive has no backup_label: it is no base backup")?;
        if !self.seen_manifest {
            return Err(
                "the archive has no backup_manifest (pg_basebackup --no-manifest?)".to_string(),
            );
        }
        Ok(Captured {
            label,
            manifest_head: self.manifest_head,
            manifest_tail: self.manifest_tail,
        })
    }

    /// A complete block in `self.header`: a member header or part of the
    /// end marker.
    fn block(&mut self) -> Result<(), String> {
        let zero = self.header.iter().all(|&b| b == 0);
        if matches!(self.state, State::EndMarker) {
            if !zero {
                return Err(format!(
                    "a lone zero block at byte {} inside the tar archive",
                    self.offset - BLOCK as u64
                ));
            }
            self.state = State::Done;
            return Ok(());
        }
        if zero {
            self.state = State::EndMarker;
            return Ok(());
        }
        let h = &self.header;
        let at = self.offset;
        let stored = octal(&h[148..156])
            .ok_or_else(|| format!("tar header at byte {at}: bad checksum field"))?;
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if stored != sum {
            return Err(format!(
                "tar header at byte {at}: checksum {stored} does not match {sum}"
            ));
        }
        let size = size_field(&h[124..136])
            .ok_or_else(|| format!("tar header at byte {at}: bad size field"))?;
        let typeflag = h[156];
        // Hard links, symlinks, directories and the like carry no data
        // whatever their size field says; everything else (regular files,
        // long names, pax headers) does.
        let has_data = !matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        let size = if has_data { size } else { 0 };
        let member = if matches!(typeflag, b'0' | 0) {
            match name(h).as_str() {
                "backup_label" => Member::Label,
                "backup_manifest" => Member::Manifest,
                _ => Member::Other,
            }
        } else {
            Member::Other
        };
        match member {
            Member::Label => {
                if self.label.is_some() {
                    return Err(format!("a second backup_label at byte {at}"));
                }
                if size > MAX_LABEL {
                    return Err(format!("backup_label is {size} bytes, not a backup label"));
                }
                self.label = Some(Vec::with_capacity(size as usize));
            }
            Member::Manifest => {
                if self.seen_manifest {
                    return Err(format!("a second backup_manifest at byte {at}"));
                }
                self.seen_manifest = true;
            }
            Member::Other => {}
        }
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.state = if size == 0 {
            State::Header
        } else {
            State::Data {
                member,
                left: size,
                padding,
            }
        };
        Ok(())
    }

    fn capture(&mut self, member: Member, bytes: &[u8]) {
        match member {
            Member::Label => {
                if let Some(label) = &mut self.label {
                    label.extend_from_slice(bytes);
                }
            }
            Member::Manifest => {
                let head = (MANIFEST_HEAD - self.manifest_head.len()).min(bytes.len());
                self.manifest_head.extend_from_slice(&bytes[..head]);
                if bytes.len() >= MANIFEST_TAIL {
                    // Whatever was kept is older than these bytes' last
                    // 64 KiB.
                    self.manifest_tail.clear();
                }
                let bytes = &bytes[bytes.len().saturating_sub(MANIFEST_TAIL)..];
                self.manifest_tail.extend_from_slice(bytes);
                if self.manifest_tail.len() > 2 * MANIFEST_TAIL {
                    let excess = self.manifest_tail.len() - MANIFEST_TAIL;
                    self.manifest_tail.drain(..excess);
                }
            }
            Member::Other => {}
        }
    }
}

/// A member's path: ustar prefix and name, without a leading `./`.
fn name(h: &[u8; BLOCK]) -> String {
    let field = |f: &[u8]| {
        let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
        String::from_utf8_lossy(&f[..end]).into_owned()
    };
    let mut path = field(&h[0..100]);
    if &h[257..262] == b"ustar" {
        let prefix = field(&h[345..500]);
        if !prefix.is_empty() {
            path = format!("{prefix}/{path}");
        }
    }
    path.strip_prefix("./").map(str::to_string).unwrap_or(path)
}

/// An octal number field: optional leading spaces, digits, then NUL or
/// space; `None` for anything else.
fn octal(field: &[u8]) -> Option<u64> {
    let text = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| b != 0 && b != b' ')
        .copied()
        .collect::<Vec<u8>>();
    if text.is_empty() || !text.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    let rest_ok = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .skip(text.len())
        .all(|&b| b == 0 || b == b' ');
    if !rest_ok {
        return None;
    }
    text.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(8)?.checked_add(u64::from(d - b'0'))
    })
}

/// The size field: octal, or GNU base-256 (high bit of the first byte set)
/// for members of 8 GiB and more.
fn size_field(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[0] != 0x80 {
            return None; // negative or too large
        }
        return field[1..]
            .iter()
            .try_fold(0u64, |n, &b| n.checked_mul(256)?.checked_add(u64::from(b)));
    }
    octal(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ustar header for `name` with `size` bytes of data.
    fn header(name: &str, size: u64, typeflag: u8) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000600\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = typeflag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    fn member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
        out.extend_from_slice(&header(name, data.len() as u64, b'0'));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }

    fn end(out: &mut Vec<u8>) {
        out.extend_from_slice(&[0; 2 * BLOCK]);
    }

    const LABEL: &[u8] = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
        CHECKPOINT LOCATION: 0/2000060\nSTART TIMELINE: 1\n";

    /// A small base-backup-like archive: a directory, files around the
    /// label, a manifest bigger than head and tail together.
    fn archive(manifest: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&header("base", 0, b'5'));
        member(&mut out, "backup_label", LABEL);
        member(&mut out, "base/1/1259", &[7u8; 1000]);
        member(&mut out, "PG_VERSION", b"15\n");
        out.extend_from_slice(&header("pg_wal/archive_status", 0, b'5'));
        member(&mut out, "./backup_manifest", manifest);
        end(&mut out);
        out
    }

    fn manifest_text(len: usize) -> Vec<u8> {
        let mut m = b"{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n".to_vec();
        while m.len() < len {
            m.extend_from_slice(format!("{{ \"Path\": \"f{}\" }},\n", m.len()).as_bytes());
        }
        m.extend_from_slice(b"\"WAL-Ranges\": [] }\n");
        m
    }

    fn scan(chunks: &[&[u8]]) -> Result<Captured, String> {
        let mut s = TarScan::new();
        for c in chunks {
            s.feed(c)?;
        }
        s.finish()
    }

    #[test]
    fn any_split_of_the_archive_gives_the_same_capture() {
        let manifest = manifest_text(3000);
        let tar = archive(&manifest);
        let whole = scan(&[&tar]).unwrap();
        assert_eq!(whole.label, LABEL);
        assert_eq!(
            whole.manifest_head,
            manifest[..MANIFEST_HEAD.min(manifest.len())]
        );
        assert_eq!(whole.manifest_tail, manifest);
        for at in 0..=tar.len() {
            assert_eq!(
                scan(&[&tar[..at], &tar[at..]]).unwrap(),
                whole,
                "split at {at}"
            );
        }
        // Byte by byte too.
        let bytes: Vec<&[u8]> = tar.chunks(1).collect();
        assert_eq!(scan(&bytes).unwrap(), whole);
        // And with extra zero padding after the end marker, as tar
        // writers pad to records.
        let mut padded = tar.clone();
        padded.extend_from_slice(&[0; 10 * BLOCK]);
        assert_eq!(scan(&[&padded]).unwrap(), whole);
    }

    /// An archive written by a real tar writer (GNU headers, a long name,
    /// a directory, an empty file), split at every offset.
    #[tokio::test]
    async fn a_real_tar_split_anywhere() {
        let manifest = manifest_text(2000);
        let mut builder = tokio_tar::Builder::new(Vec::new());
        let add = |path: String, data: Vec<u8>, kind: tokio_tar::EntryType| {
            let mut h = tokio_tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_entry_type(kind);
            (h, path, data)
        };
        let entries = vec![
            add("base".into(), vec![], tokio_tar::EntryType::Directory),
            add(
                "backup_label".into(),
                LABEL.to_vec(),
                tokio_tar::EntryType::Regular,
            ),
            add(
                format!("base/{}/16384", "x".repeat(120)),
                vec![3; 777],
                tokio_tar::EntryType::Regular,
            ),
            add("empty".into(), vec![], tokio_tar::EntryType::Regular),
            add(
                "backup_manifest".into(),
                manifest.clone(),
                tokio_tar::EntryType::Regular,
            ),
        ];
        for (mut h, path, data) in entries {
            builder
                .append_data(&mut h, path, data.as_slice())
                .await
                .unwrap();
        }
        let tar = builder.into_inner().await.unwrap();
        let whole = scan(&[&tar]).unwrap();
        assert_eq!(whole.label, LABEL);
        assert_eq!(whole.manifest_tail, manifest);
        for at in 0..=tar.len() {
            assert_eq!(
                scan(&[&tar[..at], &tar[at..]]).unwrap(),
                whole,
                "split at {at}"
            );
        }
    }

    #[test]
    fn a_big_manifest_keeps_its_head_and_last_64_kib() {
        let manifest = manifest_text(300 * 1024);
        let tar = archive(&manifest);
        for chunk in [1000, 4096, 65536, 200_000] {
            let chunks: Vec<&[u8]> = tar.chunks(chunk).collect();
            let c = scan(&chunks).unwrap();
            assert_eq!(c.manifest_head, manifest[..MANIFEST_HEAD]);
            assert!(c.manifest_tail.len() >= MANIFEST_TAIL, "{chunk}");
            assert!(c.manifest_tail.len() <= 2 * MANIFEST_TAIL, "{chunk}");
            assert!(manifest.ends_with(&c.manifest_tail), "{chunk}");
        }
    }

    #[test]
    fn malformed_archives_are_refused() {
        let tar = archive(&manifest_text(100));
        let mut flipped = tar.clone();
        flipped[BLOCK + 3] ^= 1; // in the label's header name
        let mut no_label = Vec::new();
        member(&mut no_label, "PG_VERSION", b"15\n");
        member(&mut no_label, "backup_manifest", b"{}");
        end(&mut no_label);
        let mut no_manifest = Vec::new();
        member(&mut no_manifest, "backup_label", LABEL);
        end(&mut no_manifest);
        let mut trailing = tar.clone();
        trailing.push(1);
        let mut twice = Vec::new();
        member(&mut twice, "backup_label", LABEL);
        member(&mut twice, "backup_label", LABEL);
        let mut lone_zero = Vec::new();
        member(&mut lone_zero, "backup_label", LABEL);
        lone_zero.extend_from_slice(&[0; BLOCK]);
        member(&mut lone_zero, "backup_manifest", b"{}");
        end(&mut lone_zero);
        let cases: [(&str, &[u8], &str); 8] = [
            ("truncated in data", &tar[..BLOCK + 10], "truncated"),
            (
                "truncated at a header",
                &tar[..tar.len() - 2 * BLOCK],
                "truncated",
            ),
            (
                "one zero block only",
                &tar[..tar.len() - BLOCK],
                "truncated",
            ),
            ("bad checksum", &flipped, "checksum"),
            ("no label", &no_label, "no backup_label"),
            ("no manifest", &no_manifest, "no backup_manifest"),
            ("trailing data", &trailing, "after the end"),
            ("two labels", &twice, "second backup_label"),
        ];
        for (what, bytes, expected) in cases {
            let err = scan(&[bytes]).unwrap_err();
            assert!(err.contains(expected), "{what}: {err}");
        }
        assert!(scan(&[&lone_zero]).unwrap_err().contains("lone zero block"));
        assert!(scan(&[b"not a tar at all, definitely not"]).is_err());
    }

    #[test]
    fn size_fields_octal_and_base_256() {
        assert_eq!(octal(b"00000001750\0"), Some(1000));
        assert_eq!(octal(b"   1750 \0\0\0\0"), Some(1000));
        assert_eq!(octal(b"0000000175x\0"), None);
        assert_eq!(octal(b"\0\0\0"), None);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[7] = 0x02; // 2 << 32
        assert_eq!(size_field(&big), Some(2 << 32));
        big[0] = 0xff;
        assert_eq!(size_field(&big), None);
    }
}
