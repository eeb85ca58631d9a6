//! How people read the API's numbers, the same in the CLI and the web
//! console: sizes in binary units, Unix seconds as UTC RFC 3339, ages,
//! durations and credits.

/// Bytes in binary units with one decimal: `1.5 GiB` (`512 B` below 1 KiB).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// Unix seconds as UTC RFC 3339, e.g. `2026-12-06T02:46:37Z`.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// An age in seconds, coarsely: `42 s ago`, `7 min ago`, `3 h ago`, `2 d ago`.
pub fn ago(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s} s ago"),
        s if s < 2 * 3600 => format!("{} min ago", s / 60),
        s if s < 2 * 86400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86400),
    }
}

/// Milli-credits as credits with three decimals: `12500` is `12.500`.
pub fn credits(milli: i64) -> String {
    let sign = if milli < 0 { "-" } else { "" };
    let m = milli.unsigned_abs();
    format!("{sign}{}.{:03}", m / 1000, m % 1000)
}

/// A duration as its two largest units: `1d2h`, `3h5m`, `42s`.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, s) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// An amount: credits with up to three decimals, or milli-credits with an `m` suffix.
pub fn parse_credits(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.parse::<i64>().map_err(|_| format!("{s:?} is not a whole number of milli-credits"));
    }
    let bad = || format!("{s:?} is not an amount: credits with up to 3 decimals (1.5) or milli-credits (1500m)");
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.len() > 3
        || !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let frac: i64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
    let v = whole.checked_mul(1000).and_then(|w| w.checked_add(frac)).ok_or_else(bad)?;
    Ok(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_times_and_ages() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_438_797), "2026-12-05T02:46:37Z");
        assert_eq!(ago(-5), "0 s ago");
        assert_eq!(ago(119), "119 s ago");
        assert_eq!(ago(7 * 60), "7 min ago");
        assert_eq!(ago(3 * 3600), "3 h ago");
        assert_eq!(ago(2 * 86400), "2 d ago");
    }

    #[test]
    fn credits_and_spans() {
        assert_eq!(parse_credits("12"), Ok(12_000));
        assert_eq!(parse_credits("1.5"), Ok(1500));
        assert_eq!(parse_credits("0.001"), Ok(1));
        assert_eq!(parse_credits(".25"), Ok(250));
        assert_eq!(parse_credits("1500m"), Ok(1500));
        assert_eq!(parse_credits("-2.5"), Ok(-2500));
        for bad in ["", ".", "1.2345", "1,5", "abc", "1.5m", "m"] {
            assert!(parse_credits(bad).is_err(), "{bad}");
        }
        assert_eq!([span(42), span(125), span(7260), span(90_000)], ["42s", "2m5s", "2h1m", "1d1h"]);
        assert_eq!([credits(12_500), credits(1), credits(-2500), credits(0)], ["12.500", "0.001", "-2.500", "0.000"]);
    }
}
