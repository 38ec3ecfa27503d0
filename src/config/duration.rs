//! Durations as people write them in the config: `250ms`, `1s`, `1.5s`,
//! `2m`, `1h`, `1m30s`, or a plain integer meaning seconds.

use std::time::Duration;

/// Parses a duration; the error says what was expected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let expected = "expected a duration like \"200ms\", \"1s\", \"1.5s\", \"2m\", \"1h\" or a number of seconds";
    if text.is_empty() {
        return Err(format!("{s:?} is not a duration: {expected}"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is too large a duration"))
            .and_then(|secs| check_max(s, Duration::from_secs(secs)));
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return parse_duration(&format!("{text}s"))
            .map_err(|_| format!("{s:?} is not a duration: {expected}"));
    }
    let mut total_ms: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let ms_per_unit: u128 = match unit.trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("{s:?} is not a duration: {expected}")),
        };
        // Exact decimal arithmetic: "16833127.744s" must not round.
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty())
            || frac.contains('.')
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return Err(format!("{s:?} is not a duration: {expected}"));
        }
        if int.len() + frac.len() > 20 {
            return Err(format!("{s:?} is too large a duration"));
        }
        let digits: u128 = format!("{int}{frac}")
            .parse()
            .map_err(|_| format!("{s:?} is not a duration: {expected}"))?;
        let scale = 10u128.pow(frac.len() as u32);
        let scaled = digits * ms_per_unit;
        if scaled % scale != 0 {
            return Err(format!(
                "{s:?} is not a whole number of milliseconds: {expected}"
            ));
        }
        total_ms = total_ms.saturating_add(scaled / scale);
        rest = next;
    }
    let ms = u64::try_from(total_ms).map_err(|_| format!("{s:?} is too large a duration"))?;
    check_max(s, Duration::from_millis(ms))
}

/// Longest duration accepted anywhere in the config; keeps `Instant +
/// duration` arithmetic downstream far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

fn check_max(s: &str, d: Duration) -> Result<Duration, String> {
    if d > MAX_DURATION {
        Err(format!("{s:?} is too long: at most 366 days"))
    } else {
        Ok(d)
    }
}

/// Formats a duration the way the config writes it (`200ms`, `1s`, `2m`,
/// `1m30s`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if ms % 1000 != 0 {
        return if ms > 1000 {
            format!("{}.{:03}s", ms / 1000, ms % 1000)
                .trim_end_matches('0')
                .to_string()
        } else {
            format!("{ms}ms")
        };
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_plain_seconds() {
        let cases = [
            ("250ms", 250),
            ("1s", 1000),
            ("1.5s", 1500),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("7", 7000),
            ("1.5", 1500),
            ("0", 0),
            (" 3s ", 3000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            "", "s", "1x", "1.5.1", ".", "ms", "-1s", "1.0001ms", "1s2", "fast",
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for ms in [
            1, 200, 999, 1000, 1500, 60_000, 90_000, 3_600_000, 3_661_000,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{ms}");
        }
    }
}
