//! Unix timestamps on the wire: seconds since 1970-01-01 UTC as a number
//! with millisecond precision (`1763890000.5`), the form the API, the
//! events and `anypop ctl` use (the DTOs call [`secs`]). Conversion only: it never reads the clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, rounded to milliseconds; `0` for a time
/// before the epoch.
pub fn secs(t: SystemTime) -> f64 {
    let s = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    (s * 1000.0).round() / 1000.0
}

/// The time `secs` seconds after the Unix epoch (the epoch for negative,
/// infinite or NaN values): the inverse of [`secs`] for values read from
/// the wire.
pub fn from_secs(secs: f64) -> SystemTime {
    if secs.is_finite() && secs > 0.0 && secs < 1e12 {
        UNIX_EPOCH + std::time::Duration::from_secs_f64(secs)
    } else {
        UNIX_EPOCH
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rounds_to_milliseconds_and_clamps_before_the_epoch() {
        let t = UNIX_EPOCH + Duration::from_micros(1_763_890_000_500_400);
        assert_eq!(secs(t), 1_763_890_000.5);
        assert_eq!(secs(UNIX_EPOCH + Duration::from_micros(1_999_600)), 2.0);
        assert_eq!(secs(UNIX_EPOCH - Duration::from_secs(5)), 0.0);
    }

    #[test]
    fn from_secs_inverts_secs_and_clamps_nonsense() {
        let t = UNIX_EPOCH + Duration::from_millis(1_763_890_000_500);
        assert_eq!(from_secs(secs(t)), t);
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert_eq!(from_secs(bad), UNIX_EPOCH);
        }
    }
}
