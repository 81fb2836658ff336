//! Time, injectable: the scheduler asks a [`Clock`] for `now` and sleeps
//! through it, so tests drive time with a [`ManualClock`] instead of
//! sleeping.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A source of wall-clock time that can also wait.
#[async_trait]
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Returns once `now() >= at` (immediately if it already is).
    async fn sleep_until(&self, at: DateTime<Utc>);
}

/// The system clock. Sleeps in steps of at most a minute and re-reads the
/// wall clock after each, so a changed system time or a suspended machine
/// delays a trigger by at most a minute instead of by the jump.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        loop {
            let left = at - Utc::now();
            if left <= chrono::Duration::zero() {
                return;
            }
            let step = left
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(Duration::from_secs(60));
            tokio::time::sleep(step).await;
        }
    }
}

/// A clock that moves only when told to. Sleepers wake as soon as the time
/// they wait for is reached through [`ManualClock::set`] or
/// [`ManualClock::advance`].
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use backup_core::{clock::Clock, clock::ManualClock};
/// use chrono::{TimeZone, Utc};
/// let clock = ManualClock::new(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap());
/// let waiter = {
///     let clock = clock.clone();
///     tokio::spawn(async move { clock.sleep_until(Utc.with_ymd_and_hms(2025, 1, 1, 2, 0, 0).unwrap()).await })
/// };
/// clock.advance(std::time::Duration::from_secs(3 * 3600));
/// waiter.await.unwrap();
/// # });
/// ```
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock")
            .field(&*self.now.borrow())
            .finish()
    }
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        let (tx, _) = watch::channel(start);
        ManualClock { now: Arc::new(tx) }
    }

    /// Moves to `at` (never backwards: earlier times are ignored).
    pub fn set(&self, at: DateTime<Utc>) {
        self.now.send_if_modified(|now| {
            if at > *now {
                *now = at;
                true
            } else {
                false
            }
        });
    }

    /// Moves forward by `by`.
    pub fn advance(&self, by: Duration) {
        let at = *self.now.borrow() + chrono::Duration::from_std(by).expect("duration in range");
        self.set(at);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        let mut rx = self.now.subscribe();
        while *rx.borrow_and_update() < at {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
