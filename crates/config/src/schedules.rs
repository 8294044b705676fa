//! `[[schedules]]`: cron expressions, read in a time zone, that start the
//! agent on a fixed input (fired by `rein serve`).
//!
//! What a cron expression means is defined here, once: the loader checks
//! every expression and time zone with [`CronSchedule`], and the server
//! computes its ticks with the same type. When a tick fires (lateness,
//! claims across processes) is the server's business, not this module's.

use crate::reader::Node;
use crate::source::{Loc, Sink};
use chrono::TimeZone;
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use rein_types::ScheduleDecl;

const SCHEDULE_KEYS: &[&str] = &["name", "cron", "timezone", "input", "enabled", "max_lateness"];

/// Ticks are whole seconds, so a window below one second could never be met.
const MIN_LATENESS_MS: u64 = 1_000;

/// Why a cron expression or time zone is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The expression does not parse.
    #[error("invalid cron expression \"{expression}\": {reason}")]
    Cron {
        /// As written.
        expression: String,
        /// The parser's reason.
        reason: String,
    },
    /// No IANA time zone has this name.
    #[error("unknown time zone \"{name}\"{hint}")]
    TimeZone {
        /// As written.
        name: String,
        /// What to write instead, starting with `: `.
        hint: String,
    },
}

/// A cron expression bound to its time zone: the instants it names.
///
/// Five fields (minute, hour, day of month, month, day of week), or six
/// with seconds first; `@daily` and the other nicknames too. Times are Unix
/// milliseconds; ticks fall on whole seconds. Across a daylight-saving
/// change a fixed time that does not exist that day fires at the first
/// instant after the jump, and one that happens twice fires once (its
/// first occurrence); an expression with a wildcard in the hour or minute
/// keeps its rhythm in real time.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

impl CronSchedule {
    /// Parses `expression` to be read in the IANA time zone `timezone`.
    ///
    /// # Errors
    ///
    /// [`ScheduleError`] naming what is wrong with either.
    pub fn new(expression: &str, timezone: &str) -> Result<Self, ScheduleError> {
        Ok(Self { cron: parse_cron(expression)?, zone: parse_zone(timezone)? })
    }

    /// The schedule `decl` declares. Declarations the loader produced always
    /// parse; one read back from elsewhere may not.
    ///
    /// # Errors
    ///
    /// As [`CronSchedule::new`].
    pub fn of(decl: &ScheduleDecl) -> Result<Self, ScheduleError> {
        Self::new(&decl.cron, &decl.timezone)
    }

    /// The first tick strictly after `after_ms`, or `None` when the
    /// expression names no time within a year of it (`0 0 30 2 *`).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let start = self.at(after_ms)?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// The next `n` ticks after `after_ms` (fewer if the expression runs out).
    pub fn upcoming(&self, after_ms: u64, n: usize) -> Vec<u64> {
        std::iter::successors(self.next_after(after_ms), |tick| self.next_after(*tick)).take(n).collect()
    }

    /// The last tick at or before `at_ms`, if one lies within a year of it.
    pub fn latest_at_or_before(&self, at_ms: u64) -> Option<u64> {
        let start = self.at(at_ms)?;
        let previous = self.cron.find_previous_occurrence(&start, true).ok()?;
        u64::try_from(previous.timestamp_millis()).ok()
    }

    /// `ms` as RFC 3339 in the schedule's time zone, with its offset
    /// (`2026-03-29T03:00:00+02:00`), as people reading a schedule expect.
    pub fn local_time(&self, ms: u64) -> String {
        self.at(ms).map(|time| time.to_rfc3339()).unwrap_or_default()
    }

    /// `ms` in the schedule's zone, on its whole second: ticks are whole
    /// seconds, and flooring keeps "after" and "at or before" exact.
    fn at(&self, ms: u64) -> Option<chrono::DateTime<Tz>> {
        let seconds = i64::try_from(ms / 1_000).ok()?;
        self.zone.timestamp_opt(seconds, 0).single()
    }
}

fn parse_cron(expression: &str) -> Result<Cron, ScheduleError> {
    let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
    parser
        .parse(expression)
        .map_err(|error| ScheduleError::Cron { expression: expression.to_string(), reason: error.to_string() })
}

fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>().map_err(|_| {
        let same_but_case = chrono_tz::TZ_VARIANTS.iter().find(|zone| zone.name().eq_ignore_ascii_case(name));
        let hint = match same_but_case {
            Some(zone) => format!(": did you mean \"{}\"?", zone.name()),
            None => ": use an IANA name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"".to_string(),
        };
        ScheduleError::TimeZone { name: name.to_string(), hint }
    })
}

/// A schedule as declared, with where its name is, for the duplicate check.
struct DeclaredSchedule {
    decl: ScheduleDecl,
    loc: Loc,
    key: String,
}

/// `[[schedules]]`: each entry checked, names unique within the agent.
pub(crate) fn parse_schedules(node: &Node<'_, '_>, sink: &mut Sink) -> Vec<ScheduleDecl> {
    if matches!(node.value, toml::de::DeValue::Table(_)) {
        sink.error(
            &node.loc(),
            &node.key,
            "write each schedule as [[schedules]] (an array of tables), not [schedules]",
        );
        return Vec::new();
    }
    let mut declared: Vec<DeclaredSchedule> = Vec::new();
    for item in node.array(sink).unwrap_or_default() {
        let Some(schedule) = parse_schedule(&item, sink) else { continue };
        if let Some(first) = declared.iter().find(|d| d.decl.name == schedule.decl.name) {
            sink.error(
                &schedule.loc,
                &schedule.key,
                format!("duplicate schedule name \"{}\": already declared at {}", schedule.decl.name, first.loc),
            );
            continue;
        }
        declared.push(schedule);
    }
    declared.into_iter().map(|d| d.decl).collect()
}

fn parse_schedule(item: &Node<'_, '_>, sink: &mut Sink) -> Option<DeclaredSchedule> {
    let t = item.table(sink)?;
    t.check_keys(SCHEDULE_KEYS, sink, &|key| match key {
        "schedule" | "expression" | "at" => Some("the cron expression goes in `cron`".to_string()),
        "tz" | "time_zone" | "zone" => Some("the time zone goes in `timezone`".to_string()),
        _ => None,
    });

    let name_node = t.require("name", sink);
    let name = name_node.as_ref().and_then(|node| {
        let name = node.str(sink)?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            sink.error(
                &node.loc(),
                &node.key,
                format!("invalid schedule name \"{name}\": use 1 to 64 letters, digits, _ or -"),
            );
        }
        valid.then(|| name.to_string())
    });

    let cron = t.require("cron", sink).and_then(|node| {
        let expression = node.str(sink)?;
        match parse_cron(expression) {
            Ok(_) => Some(expression.to_string()),
            Err(error) => {
                sink.error(
                    &node.loc(),
                    &node.key,
                    format!("{error}; write five fields (minute hour day-of-month month day-of-week), or six with seconds first"),
                );
                None
            }
        }
    });

    let timezone = match t.get("timezone") {
        None => Some(ScheduleDecl::DEFAULT_TIMEZONE.to_string()),
        Some(node) => node.str(sink).and_then(|name| match parse_zone(name) {
            Ok(_) => Some(name.to_string()),
            Err(error) => {
                sink.error(&node.loc(), &node.key, error.to_string());
                None
            }
        }),
    };

    let input = t.require("input", sink).and_then(|node| {
        let text = node.str(sink)?;
        if text.trim().is_empty() {
            sink.error(&node.loc(), &node.key, "an empty input gives the agent nothing to do");
            return None;
        }
        Some(text.to_string())
    });

    let mut enabled_ok = true;
    let enabled = match t.get("enabled") {
        None => true,
        Some(node) => node.bool(sink).unwrap_or_else(|| {
            enabled_ok = false;
            false
        }),
    };

    let max_lateness_ms = match t.get("max_lateness") {
        None => Some(ScheduleDecl::DEFAULT_MAX_LATENESS_MS),
        Some(node) => match node.duration_ms(sink) {
            Some(ms) if ms >= MIN_LATENESS_MS => Some(ms),
            Some(_) => {
                sink.error(&node.loc(), &node.key, "must be at least 1s: ticks are whole seconds");
                None
            }
            None => None,
        },
    };

    let (name, cron, timezone, input, max_lateness_ms, node) =
        (name?, cron?, timezone?, input?, max_lateness_ms?, name_node?);
    enabled_ok.then(|| DeclaredSchedule {
        decl: ScheduleDecl { name, cron, timezone, input, enabled, max_lateness_ms },
        loc: node.loc(),
        key: node.key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-29 00:00:00 UTC: the night clocks in Europe go forward.
    const MARCH_29_UTC_MS: u64 = 1_774_742_400_000;

    #[test]
    fn five_fields_tick_on_minutes_and_six_on_seconds() {
        let minutely = CronSchedule::new("* * * * *", "UTC").unwrap();
        assert_eq!(minutely.next_after(MARCH_29_UTC_MS), Some(MARCH_29_UTC_MS + 60_000));
        assert_eq!(minutely.next_after(MARCH_29_UTC_MS + 1), Some(MARCH_29_UTC_MS + 60_000));
        assert_eq!(minutely.latest_at_or_before(MARCH_29_UTC_MS + 59_999), Some(MARCH_29_UTC_MS));
        let secondly = CronSchedule::new("* * * * * *", "UTC").unwrap();
        assert_eq!(secondly.next_after(MARCH_29_UTC_MS + 500), Some(MARCH_29_UTC_MS + 1_000));
    }

    #[test]
    fn expressions_are_read_in_their_time_zone() {
        // 09:00 in Berlin on a winter day is 08:00 UTC.
        let berlin = CronSchedule::new("0 9 * * *", "Europe/Berlin").unwrap();
        let january_1_ms = 1_767_225_600_000; // 2026-01-01 00:00 UTC
        assert_eq!(berlin.next_after(january_1_ms), Some(january_1_ms + 8 * 3_600_000));
        assert_eq!(berlin.local_time(january_1_ms + 8 * 3_600_000), "2026-01-01T09:00:00+01:00");
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        assert!(matches!(CronSchedule::new("61 * * * *", "UTC"), Err(ScheduleError::Cron { .. })));
        assert!(matches!(CronSchedule::new("* * * *", "UTC"), Err(ScheduleError::Cron { .. })));
        assert!(matches!(CronSchedule::new("* * * * * * 2030", "UTC"), Err(ScheduleError::Cron { .. })));
        let error = CronSchedule::new("* * * * *", "europe/berlin").unwrap_err();
        assert!(error.to_string().contains("did you mean \"Europe/Berlin\""), "{error}");
        let error = CronSchedule::new("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(error.to_string().contains("IANA"), "{error}");
    }
}
