//! Durations as agent files write them: `"500ms"`, `"30s"`, `"1.5s"`, `"2m"`,
//! `"1h"`, or a bare integer of seconds.
//!
//! One unit per value keeps them unambiguous to read; sub-millisecond
//! precision is meaningless for time-outs and backoffs, so values are whole
//! milliseconds.

/// Parses a duration string into milliseconds. Returns a message fit for a
/// diagnostic on failure.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim();
    let scale: f64 = match unit {
        "ms" => 1.0,
        "s" | "" => 1_000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        _ => {
            return Err(format!(
                "invalid duration \"{text}\": unknown unit \"{unit}\"; use ms, s, m or h (e.g. \"30s\")"
            ));
        }
    };
    if number.is_empty() {
        return Err(format!(
            "invalid duration \"{text}\": expected a number followed by ms, s, m or h (e.g. \"500ms\")"
        ));
    }
    let value: f64 =
        number.parse().map_err(|_| format!("invalid duration \"{text}\": \"{number}\" is not a number"))?;
    let ms = (value * scale).round();
    if ms < 1.0 {
        return Err(format!("invalid duration \"{text}\": must be at least 1ms"));
    }
    // Above this a u64 of milliseconds is not exact in f64; no time-out needs it.
    if ms > 9.0e15 {
        return Err(format!("invalid duration \"{text}\": too long"));
    }
    Ok(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("7"), Ok(7_000));
        assert!(parse_duration_ms("0s").is_err());
        assert!(parse_duration_ms("10 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_duration_ms("s").is_err());
        assert!(parse_duration_ms("1.2.3s").is_err());
        assert!(parse_duration_ms("-1s").is_err());
    }
}
