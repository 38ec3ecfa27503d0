//! Time as the core sees it: one [`Now`] (monotonic and wall-clock time
//! read together) per input, from a [`Clock`] the caller injects.
//!
//! Decision code never reads a clock: [`super::Core::handle`] and the
//! timer step take a `Now`, events are stamped with its wall time, and
//! deadlines are compared with its monotonic time. Production runs on
//! [`SystemClock`]; tests and golden replays run on [`TokioClock`], whose
//! wall time moves with tokio's (paused) clock, so a replay is exact.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The stand-in for a deadline the monotonic clock cannot represent
/// (about a century).
pub const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// One reading of the clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time (tokio's clock: paused in tests). Deadlines, drain
    /// phases, settle periods.
    pub mono: Instant,
    /// Wall-clock time: event and state timestamps, auto-undrain times
    /// (persisted, so they survive a restart).
    pub wall: SystemTime,
}

impl Now {
    /// The monotonic instant at which the wall clock reads `at` (now if
    /// `at` is in the past), assuming the two clocks run at the same rate.
    /// A time too far away for the monotonic clock is [`FAR_FUTURE`]
    /// from now: never an overflow.
    pub fn mono_at(&self, at: SystemTime) -> Instant {
        let ahead = at.duration_since(self.wall).unwrap_or(Duration::ZERO);
        self.mono
            .checked_add(ahead)
            .unwrap_or(self.mono + FAR_FUTURE)
    }

    /// The wall-clock time at monotonic instant `at` (now if in the past).
    pub fn wall_at(&self, at: Instant) -> SystemTime {
        self.wall + at.saturating_duration_since(self.mono)
    }
}

/// A source of [`Now`].
pub trait Clock: Send + 'static {
    fn now(&self) -> Now;
}

/// The real clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// Wall time that starts at a fixed `wall` and then advances exactly with
/// tokio's clock: under `start_paused` tests every reading is determined
/// by the inputs, and a replay gives the same timestamps every run.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: Instant,
    wall: SystemTime,
}

impl TokioClock {
    /// A clock whose wall time is `wall` now.
    pub fn starting_at(wall: SystemTime) -> TokioClock {
        TokioClock {
            start: Instant::now(),
            wall,
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Now {
        let mono = Instant::now();
        Now {
            mono,
            wall: self.wall + mono.saturating_duration_since(self.start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = TokioClock::starting_at(base);
        let a = c.now();
        assert_eq!(a.wall, base);
        tokio::time::advance(Duration::from_millis(1500)).await;
        let b = c.now();
        assert_eq!(b.wall, base + Duration::from_millis(1500));
        assert_eq!(b.mono - a.mono, Duration::from_millis(1500));
        assert_eq!(a.mono_at(b.wall), b.mono);
        assert_eq!(a.wall_at(b.mono), b.wall);
        assert_eq!(b.mono_at(a.wall), b.mono, "a past wall time is now");
    }
}
