//! Durations as people write them: `90s`, `30m`, `2h`, `7d`, `500ms`, or plain seconds.

/// Parses a non-negative duration: seconds (fractions allowed), or a number with a unit
/// (`500ms`, `90s`, `30m`, `2h`, `1d`).
pub fn parse(s: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match s
        .trim()
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
    {
        Some((at, _)) => s.trim().split_at(at),
        None => (s.trim(), "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => {
            return Err(format!(
                "`{s}`: the unit must be ms, s, m, h or d (e.g. 90s, 30m)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 90s, 30m, 2h, or seconds)"))?;
    std::time::Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("`{s}` is not a non-negative duration"))
}

/// A duration in the shortest of the forms [`parse`] reads (`500ms`, `90s`, `30m`, `2h`).
pub fn words(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs < 120 || !secs.is_multiple_of(60) {
        format!("{secs}s")
    } else if secs < 7200 || !secs.is_multiple_of(3600) {
        format!("{}m", secs / 60)
    } else {
        format!("{}h", secs / 3600)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse;

    #[test]
    fn units_and_plain_seconds_are_read() {
        for (text, secs) in [
            ("90", 90.0),
            ("1.5", 1.5),
            ("500ms", 0.5),
            ("90s", 90.0),
            ("30m", 1800.0),
            ("2h", 7200.0),
            ("7d", 604_800.0),
            (" 2h ", 7200.0),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_secs_f64(secs)), "{text}");
        }
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        for text in ["", "abc", "5x", "-3s", "1e400s"] {
            assert!(parse(text).is_err(), "{text}");
        }
        assert!(parse("5w").unwrap_err().contains("ms, s, m, h or d"));
    }
}
