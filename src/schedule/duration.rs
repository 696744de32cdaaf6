//! Durations in the Go syntax the API server accepts (`1h30m`, `90s`): parsed from the spec's
//! `lifetime` and `renewBefore`, and written back in messages in the same syntax.

use std::time::Duration;

/// The Go duration grammar the API server accepts for `duration()` (`1h30m`, `90s`, `1.5h`),
/// without a sign: one or more `<number><unit>` parts, units `ns`, `us`, `µs`, `ms`, `s`, `m`,
/// `h`. Also the CRD's `pattern` for duration fields (so admission refuses the rest).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// Parses a duration of the [`DURATION_PATTERN`] grammar, up to 10,000 hours. Never panics:
/// stored objects are untrusted input (kube's own Go-duration parser panics on `2h-1h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const MAX: Duration = Duration::from_secs(10_000 * 3_600);
    let invalid = || format!("{text:?} is not a duration like 1h, 20m or 1h30m");
    if text.is_empty() || text.len() > 64 {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let well_formed = !whole.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && (number.len() == whole.len() || (!fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit())));
        if !well_formed {
            return Err(invalid());
        }
        let (unit_nanos, unit_len) = match tail {
            t if t.starts_with("ns") => (1u128, 2),
            t if t.starts_with("us") => (1_000, 2),
            t if t.starts_with("µs") => (1_000, "µs".len()),
            t if t.starts_with("ms") => (1_000_000, 2),
            t if t.starts_with('s') => (1_000_000_000, 1),
            t if t.starts_with('m') => (60_000_000_000, 1),
            t if t.starts_with('h') => (3_600_000_000_000, 1),
            _ => return Err(invalid()),
        };
        // Whole part and up to 9 fraction digits in integer nanoseconds: exact, and no float
        // conversion that could panic.
        let whole: u128 = (whole.len() <= 12)
            .then_some(whole)
            .and_then(|w| w.parse().ok())
            .ok_or_else(invalid)?;
        let digits = &fraction[..fraction.len().min(9)];
        let scale = 10u128.pow(digits.len() as u32);
        let fraction_value: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| invalid())?
        };
        let nanos = whole * unit_nanos + fraction_value * unit_nanos / scale;
        total = total.saturating_add(Duration::from_nanos(u64::try_from(nanos).map_err(|_| invalid())?));
        if total > MAX {
            return Err(format!("{text:?} is too long a duration"));
        }
        rest = &tail[unit_len..];
    }
    Ok(total)
}

/// Formats `d` compactly in Go duration syntax (`1h20m`, `45s`, `1.5s`,
/// `250ms`), so messages read naturally and the text can be pasted back into
/// any field that takes a Go duration.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let nanos = d.subsec_nanos();
    if d.as_secs() == 0 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = d.as_secs();
    let (hours, minutes, seconds) = (secs / 3_600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || nanos > 0 {
        out.push_str(&seconds.to_string());
        if nanos > 0 {
            let fraction = format!("{nanos:09}");
            out.push('.');
            out.push_str(fraction.trim_end_matches('0'));
        }
        out.push('s');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_go_grammar_exactly() {
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("15m0.5s").unwrap(), Duration::from_millis(900_500));
        assert_eq!(parse_duration("0.25h").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("168h").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2µs").unwrap(), Duration::from_micros(2));
    }

    #[test]
    fn refuses_everything_else_without_panicking() {
        let long = "1h".repeat(40);
        for text in [
            "",
            "h",
            "1",
            "-1h",
            "+1h",
            "2h-1h",
            "1h junk",
            "1.5e1m",
            "1e3h",
            ".5h",
            "5.h",
            "1y",
            "1d",
            "1H",
            " 1h",
            "1h ",
            "99999999999999999999999h",
            "10001h",
            "1..5h",
            "٣h",
            "1h\n",
            long.as_str(),
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} must be refused");
        }
    }

    #[test]
    fn the_crd_pattern_accepts_exactly_what_the_parser_accepts() {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        for text in [
            "1h", "1h30m", "15m0.5s", "2µs", "0.25h", "2h-1h", "1h junk", "-1h", "1.5e1m", ".5h", "5.h", "1y", "",
        ] {
            assert_eq!(pattern.is_match(text), parse_duration(text).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn format_duration_is_compact_go_syntax() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(45), "45s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(3_600), "1h"),
            (Duration::from_secs(4_800), "1h20m"),
            (Duration::from_secs(4_805), "1h20m5s"),
            (Duration::from_secs(3_605), "1h5s"),
            (Duration::from_secs(7 * 86_400), "168h"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(3), "3us"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::from_nanos(61_000_000_001), "1m1.000000001s"),
        ] {
            assert_eq!(format_duration(d), s);
            let parsed: kube::core::Duration = s.parse().unwrap();
            assert_eq!(Duration::from(parsed), d, "{s} must parse back as a Go duration");
        }
        assert!(!format_duration(Duration::MAX).is_empty());
    }
}
