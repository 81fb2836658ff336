//! [`FaultyStore`]: a store wrapper that fails on purpose, for tests that
//! must show a failure at any point leaves no listed backup without data.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{
    GetResult, ObjectMeta, PutOptions, Store, TemporaryObject, TemporarySweep, Upload,
};

/// A store operation a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`Store::put`].
    Put,
    /// [`Store::put_stream`] (starting an upload).
    PutStream,
    /// [`Upload::write`].
    Write,
    /// [`Upload::complete`].
    Complete,
    /// [`Upload::abort`].
    Abort,
    /// [`Store::get`] (opening the object).
    Get,
    /// [`Store::get_range`].
    GetRange,
    /// [`Store::head`].
    Head,
    /// [`Store::list`].
    List,
    /// [`Store::delete`].
    Delete,
    /// [`Store::delete_many`].
    DeleteMany,
    /// [`Store::sweep_temporary`].
    SweepTemporary,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 12] = [
        Operation::Put,
        Operation::PutStream,
        Operation::Write,
        Operation::Complete,
        Operation::Abort,
        Operation::Get,
        Operation::GetRange,
        Operation::Head,
        Operation::List,
        Operation::Delete,
        Operation::DeleteMany,
        Operation::SweepTemporary,
    ];

    /// Operations that change the store, where a fault can also strike
    /// after the change took effect (a lost response).
    pub const MUTATING: [Operation; 4] = [
        Operation::Put,
        Operation::Complete,
        Operation::Delete,
        Operation::DeleteMany,
    ];
}

/// Which faults a [`FaultyStore`] injects, and how often: each rate is the
/// probability (0 to 1) that one call suffers it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Faults {
    /// Seed of the random choices.
    pub seed: u64,
    /// Per operation: the call fails before it takes effect.
    pub fail_before: BTreeMap<Operation, f64>,
    /// Per mutating operation: the call takes effect, then reports an
    /// error (the response was lost).
    pub fail_after: BTreeMap<Operation, f64>,
    /// An object read ([`Store::get`]) ends cleanly but early: a truncated
    /// body, with the full size still announced.
    pub truncate_reads: f64,
    /// An object read ends with an error after part of the body.
    pub break_reads: f64,
    /// A listing ends with an error after part of the keys.
    pub break_listings: f64,
    /// Every call first waits a random time up to this.
    pub max_latency: Duration,
}

impl Faults {
    /// No faults at all (add them with the builder methods).
    pub fn none(seed: u64) -> Self {
        Faults {
            seed,
            ..Faults::default()
        }
    }

    /// Every kind of fault at `rate`: each operation fails before (and each
    /// mutating one after) taking effect, reads are cut short or broken,
    /// listings broken, each with probability `rate`.
    pub fn everywhere(seed: u64, rate: f64) -> Self {
        let mut faults = Faults::none(seed);
        for op in Operation::ALL {
            faults.fail_before.insert(op, rate);
        }
        for op in Operation::MUTATING {
            faults.fail_after.insert(op, rate);
        }
        faults.truncate_reads = rate;
        faults.break_reads = rate;
        faults.break_listings = rate;
        faults
    }

    /// Sets the rate at which `op` fails before taking effect.
    pub fn fail_before(mut self, op: Operation, rate: f64) -> Self {
        self.fail_before.insert(op, rate);
        self
    }

    /// Sets the rate at which `op` takes effect and then fails.
    pub fn fail_after(mut self, op: Operation, rate: f64) -> Self {
        self.fail_after.insert(op, rate);
        self
    }

    /// Sets [`Faults::truncate_reads`] and [`Faults::break_reads`].
    pub fn reads(mut self, truncate: f64, break_off: f64) -> Self {
        self.truncate_reads = truncate;
        self.break_reads = break_off;
        self
    }

    /// Sets [`Faults::max_latency`].
    pub fn latency(mut self, max: Duration) -> Self {
        self.max_latency = max;
        self
    }
}

/// What the wrapper and its uploads share.
struct Dice {
    faults: Faults,
    rng: Mutex<StdRng>,
    enabled: AtomicBool,
    injected: AtomicU64,
}

impl Dice {
    fn roll(&self, rate: f64) -> bool {
        if !self.enabled.load(Ordering::SeqCst) || rate <= 0.0 {
            return false;
        }
        let hit = self
            .rng
            .lock()
            .expect("fault dice")
            .random_bool(rate.min(1.0));
        if hit {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        hit
    }

    fn before(&self, op: Operation) -> bool {
        self.roll(self.faults.fail_before.get(&op).copied().unwrap_or(0.0))
    }

    fn after(&self, op: Operation) -> bool {
        self.roll(self.faults.fail_after.get(&op).copied().unwrap_or(0.0))
    }

    /// A number below `n` (0 when `n` is 0).
    fn below(&self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.rng.lock().expect("fault dice").random_range(0..n)
    }

    async fn delay(&self) {
        let max = self.faults.max_latency;
        if max.is_zero() || !self.enabled.load(Ordering::SeqCst) {
            return;
        }
        let micros = self.below(max.as_micros().min(u128::from(u64::MAX)) as u64 + 1);
        tokio::time::sleep(Duration::from_micros(micros)).await;
    }
}

fn injected(op: Operation, key: &str, when: &str) -> Error {
    Error::Store {
        store: "faulty".into(),
        retryable: true,
        source: format!("injected fault: {op:?} of {key} failed {when}").into(),
    }
}

/// Wraps a store and injects the [`Faults`] it is given: errors before or
/// after an operation takes effect, truncated and broken reads, broken
/// listings, latency. Seeded, so a failing run can be repeated (as far as
/// concurrency allows). [`FaultyStore::set_enabled`] turns the faults off
/// and on, for checking the state a run left.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    dice: Arc<Dice>,
}

impl FaultyStore {
    /// Wraps `inner`; faults are on.
    pub fn new(inner: Arc<dyn Store>, faults: Faults) -> Self {
        let rng = StdRng::seed_from_u64(faults.seed);
        FaultyStore {
            inner,
            dice: Arc::new(Dice {
                faults,
                rng: Mutex::new(rng),
                enabled: AtomicBool::new(true),
                injected: AtomicU64::new(0),
            }),
        }
    }

    /// Turns the faults on or off.
    pub fn set_enabled(&self, on: bool) {
        self.dice.enabled.store(on, Ordering::SeqCst);
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.dice.injected.load(Ordering::SeqCst)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("faults", &self.dice.faults)
            .field("injected", &self.injected())
            .finish()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "faulty({})", self.inner)
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta> {
        self.dice.delay().await;
        if self.dice.before(Operation::Put) {
            return Err(injected(Operation::Put, key.as_str(), "before writing"));
        }
        let meta = self.inner.put(key, data, opts).await?;
        if self.dice.after(Operation::Put) {
            return Err(injected(Operation::Put, key.as_str(), "after writing"));
        }
        Ok(meta)
    }

    async fn put_stream(&self, key: &Key) -> Result<Box<dyn Upload>> {
        self.dice.delay().await;
        if self.dice.before(Operation::PutStream) {
            return Err(injected(Operation::PutStream, key.as_str(), "to start"));
        }
        Ok(Box::new(FaultyUpload {
            inner: self.inner.put_stream(key).await?,
            key: key.clone(),
            dice: Arc::clone(&self.dice),
        }))
    }

    async fn get(&self, key: &Key) -> Result<GetResult> {
        self.dice.delay().await;
        if self.dice.before(Operation::Get) {
            return Err(injected(Operation::Get, key.as_str(), "to open"));
        }
        let got = self.inner.get(key).await?;
        let size = got.meta.size;
        let stream = if size > 0 && self.dice.roll(self.dice.faults.truncate_reads) {
            cut(got.stream, self.dice.below(size), None)
        } else if self.dice.roll(self.dice.faults.break_reads) {
            let error = injected(Operation::Get, key.as_str(), "while reading");
            cut(got.stream, self.dice.below(size + 1), Some(error))
        } else {
            got.stream
        };
        Ok(GetResult {
            meta: got.meta,
            stream,
        })
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Bytes> {
        self.dice.delay().await;
        if self.dice.before(Operation::GetRange) {
            return Err(injected(Operation::GetRange, key.as_str(), "to read"));
        }
        self.inner.get_range(key, range).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.dice.delay().await;
        if self.dice.before(Operation::Head) {
            return Err(injected(Operation::Head, key.as_str(), "to answer"));
        }
        self.inner.head(key).await
    }

    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, Result<ObjectMeta>> {
        let what = prefix.map_or("the store", |p| p.as_str()).to_string();
        if self.dice.before(Operation::List) {
            let error = injected(Operation::List, &what, "to start");
            return futures::stream::iter([Err(error)]).boxed();
        }
        let inner = self.inner.list(prefix);
        if self.dice.roll(self.dice.faults.break_listings) {
            let keep = self.dice.below(8) as usize;
            let error = injected(Operation::List, &what, "midway");
            return inner
                .take(keep)
                .chain(futures::stream::iter([Err(error)]))
                .boxed();
        }
        inner
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.dice.delay().await;
        if self.dice.before(Operation::Delete) {
            return Err(injected(Operation::Delete, key.as_str(), "before deleting"));
        }
        self.inner.delete(key).await?;
        if self.dice.after(Operation::Delete) {
            return Err(injected(Operation::Delete, key.as_str(), "after deleting"));
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        self.dice.delay().await;
        let what = format!("{} keys", keys.len());
        if self.dice.before(Operation::DeleteMany) {
            // Part of the batch may go, as with a backend failing mid-way.
            let done = self.dice.below(keys.len() as u64 + 1) as usize;
            self.inner.delete_many(&keys[..done]).await?;
            return Err(injected(Operation::DeleteMany, &what, "part-way"));
        }
        self.inner.delete_many(keys).await?;
        if self.dice.after(Operation::DeleteMany) {
            return Err(injected(Operation::DeleteMany, &what, "after deleting"));
        }
        Ok(())
    }

    async fn sweep_temporary(&self, opts: &TemporarySweep) -> Result<Vec<TemporaryObject>> {
        if self.dice.before(Operation::SweepTemporary) {
            return Err(injected(
                Operation::SweepTemporary,
                "temporary objects",
                "to start",
            ));
        }
        self.inner.sweep_temporary(opts).await
    }
}

/// The first `keep` bytes of `stream`, then `error` or a clean end.
fn cut(
    stream: crate::store::ByteStream,
    keep: u64,
    error: Option<Error>,
) -> crate::store::ByteStream {
    futures::stream::unfold(
        (stream, keep, error, false),
        |(mut stream, left, error, done)| async move {
            if done {
                return None;
            }
            if left == 0 {
                return error.map(|e| (Err(e), (stream, 0, None, true)));
            }
            match stream.next().await {
                Some(Ok(mut chunk)) => {
                    if chunk.len() as u64 > left {
                        chunk.truncate(left as usize);
                    }
                    let left = left - chunk.len() as u64;
                    Some((Ok(chunk), (stream, left, error, false)))
                }
                Some(Err(e)) => Some((Err(e), (stream, 0, None, true))),
                None => error.map(|e| (Err(e), (stream, 0, None, true))),
            }
        },
    )
    .boxed()
}

struct FaultyUpload {
    inner: Box<dyn Upload>,
    key: Key,
    dice: Arc<Dice>,
}

impl fmt::Debug for FaultyUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyUpload")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Upload for FaultyUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.dice.before(Operation::Write) {
            return Err(injected(Operation::Write, self.key.as_str(), "to write"));
        }
        self.inner.write(data).await
    }

    async fn complete(self: Box<Self>) -> Result<ObjectMeta> {
        let FaultyUpload { inner, key, dice } = *self;
        dice.delay().await;
        if dice.before(Operation::Complete) {
            let _ = inner.abort().await;
            return Err(injected(
                Operation::Complete,
                key.as_str(),
                "before committing",
            ));
        }
        let meta = inner.complete().await?;
        if dice.after(Operation::Complete) {
            return Err(injected(
                Operation::Complete,
                key.as_str(),
                "after committing",
            ));
        }
        Ok(meta)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let FaultyUpload { inner, key, dice } = *self;
        if dice.before(Operation::Abort) {
            // Dropping an upload discards it too (best effort).
            drop(inner);
            return Err(injected(Operation::Abort, key.as_str(), "to abort"));
        }
        inner.abort().await
    }
}
