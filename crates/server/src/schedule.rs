//! The scheduler: fires the `[[schedules]]` of the deployed agents.
//!
//! One task for all of them. It sleeps until the next tick of any schedule
//! (at most 30 s, or until an agent is deployed here), then, for each schedule, works out
//! which ticks fell due since it last looked ([`due_ticks`], a pure function
//! of the schedule and two instants) and claims each tick it fires in the
//! store, queuing the tick's run. The claim is what makes a tick start exactly one run however many
//! servers share the store: the one that wins it starts the run, the others
//! count the tick as claimed elsewhere. Which ticks fire is decided here;
//! what a cron expression means is `rein_config::CronSchedule`'s.
//!
//! Nothing is remembered across restarts but the claims: a server that
//! starts fires the most recent tick if it is within the schedule's
//! `max_lateness` (the claim stops it when another server, or this one
//! before a quick restart, already fired it), and skips older ones.

use crate::auth::{Auth, RunsRead};
use crate::error::ApiError;
use crate::{AppState, Served};
use axum::Json;
use axum::extract::{Path, State};
use rein::config::CronSchedule;
use rein::{RunId, ScheduleDecl, TenantId};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Past this many, missed ticks are not counted one by one: a per-second
/// schedule on a machine that slept for days must not stall the loop.
const MAX_COUNTED_TICKS: u64 = 10_000;

/// How many fire times `GET /v1/agents/{name}/schedules` lists.
const LISTED_FIRE_TIMES: usize = 5;

/// A served agent's schedule, ready to compute ticks.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub agent: String,
    pub decl: ScheduleDecl,
    pub cron: CronSchedule,
}

impl Schedule {
    /// `decl` of `agent`, with its expression parsed.
    ///
    /// # Errors
    ///
    /// The expression or time zone does not parse (the loader refuses
    /// both, so only a definition written by other means can fail).
    pub fn new(agent: &str, decl: ScheduleDecl) -> Result<Self, rein::config::ScheduleError> {
        let cron = CronSchedule::of(&decl)?;
        Ok(Self { agent: agent.to_owned(), decl, cron })
    }
}

/// What to do about a schedule at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// The tick to fire: the most recent one due, if it is within
    /// `max_lateness`.
    pub fire: Option<u64>,
    /// Ticks due but not fired: later than `max_lateness`, or superseded by
    /// a more recent one (at most [`MAX_COUNTED_TICKS`] are counted).
    pub skipped_late: u64,
}

/// How one tick ended, as the metrics' `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// This server claimed it and started the run.
    Fired,
    /// Another server (or this one, before a restart) claimed it first.
    ClaimedElsewhere,
    /// Due but not fired: too late, or a more recent tick was due too.
    SkippedLate,
    /// The agent's kill switch is off.
    SkippedDisabled,
}

impl TickOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TickOutcome::Fired => "fired",
            TickOutcome::ClaimedElsewhere => "claimed_elsewhere",
            TickOutcome::SkippedLate => "skipped_late",
            TickOutcome::SkippedDisabled => "skipped_disabled",
        }
    }
}

/// The ticks of `schedule` due at `now_ms`, when it was last looked at at
/// `last_checked_ms` (`None`: never, by this process).
///
/// Ticks in `(last_checked_ms, now_ms]` are due. Only the most recent of
/// them fires, and only if it is at most `max_lateness` old; the rest are
/// skipped. A schedule never looked at considers only its most recent tick
/// (whether earlier ones fired is known only to the store's claims, and
/// reporting them as skipped would count ticks another process fired).
pub fn due_ticks(schedule: &Schedule, last_checked_ms: Option<u64>, now_ms: u64) -> Due {
    let Some(latest) = schedule.cron.latest_at_or_before(now_ms) else { return Due::default() };
    let fresh = now_ms - latest <= schedule.decl.max_lateness_ms;
    let Some(last_checked) = last_checked_ms else {
        return Due { fire: fresh.then_some(latest), skipped_late: 0 };
    };
    if latest <= last_checked {
        return Due::default();
    }
    let mut due = 0;
    let mut tick = last_checked;
    while due < MAX_COUNTED_TICKS {
        match schedule.cron.next_after(tick) {
            Some(next) if next <= now_ms => {
                due += 1;
                tick = next;
            }
            _ => break,
        }
    }
    let fire = fresh.then_some(latest);
    Due { fire, skipped_late: due.saturating_sub(u64::from(fire.is_some())) }
}

/// Starts the scheduler for the agents `state` serves, now and later.
pub fn spawn_scheduler(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(state))
}

/// The longest the scheduler sleeps without looking at the deployed agents
/// again: a deploy made through another server sharing the store reaches
/// this one's schedules within it.
const RESCAN: Duration = Duration::from_secs(30);

async fn run(state: Arc<AppState>) {
    let mut last_checked: HashMap<(String, String), u64> = HashMap::new();
    loop {
        let schedules = deployed_schedules(&state).await;
        let now_ms = rein::now_ms();
        let mut next_tick: Option<u64> = None;
        for (schedule, served, tenant) in &schedules {
            let key = (schedule.agent.clone(), schedule.decl.name.clone());
            let due = due_ticks(schedule, last_checked.get(&key).copied(), now_ms);
            if due.skipped_late > 0 {
                count(&state, schedule, TickOutcome::SkippedLate, due.skipped_late);
            }
            if let Some(tick) = due.fire {
                match fire(&state, schedule, served, tenant, tick).await {
                    Ok(outcome) => count(&state, schedule, outcome, 1),
                    Err(error) => tracing::error!(
                        agent = schedule.agent,
                        schedule = schedule.decl.name,
                        tick,
                        error = %error.message,
                        "could not fire a schedule's tick"
                    ),
                }
            }
            last_checked.insert(key, now_ms);
            if let Some(next) = schedule.cron.next_after(now_ms) {
                next_tick = Some(next_tick.map_or(next, |earliest| earliest.min(next)));
            }
        }
        // Schedules no longer deployed are forgotten: deployed again, they
        // start afresh, as after a restart.
        last_checked
            .retain(|(agent, name), _| schedules.iter().any(|(s, ..)| s.agent == *agent && s.decl.name == *name));

        let changed = state.agents_changed.notified();
        let wait = next_tick.map_or(RESCAN, |tick| Duration::from_millis(tick.saturating_sub(rein::now_ms())));
        tokio::select! {
            () = tokio::time::sleep(wait.min(RESCAN)) => {}
            () = changed => {}
        }
    }
}

/// The enabled schedules of every deployed agent, each with its agent and
/// the tenant owning it.
async fn deployed_schedules(state: &AppState) -> Vec<(Schedule, Arc<Served>, TenantId)> {
    let deployed = match state.deployed().await {
        Ok(deployed) => deployed,
        Err(error) => {
            tracing::error!(error = %error.message, "cannot read the deployed agents; no schedule fires until it can");
            return Vec::new();
        }
    };
    let mut schedules = Vec::new();
    for (record, served) in deployed {
        for decl in served.definition.schedules.iter().filter(|d| d.enabled) {
            match Schedule::new(&record.name, decl.clone()) {
                Ok(schedule) => schedules.push((schedule, served.clone(), record.tenant.clone())),
                Err(error) => tracing::error!(agent = record.name, schedule = decl.name, %error, "schedule not fired"),
            }
        }
    }
    schedules
}

/// Fires `tick` unless the agent is disabled or another server claimed it:
/// the run goes on the queue, for this server's worker loop or any other.
async fn fire(
    state: &AppState,
    schedule: &Schedule,
    served: &Served,
    tenant: &TenantId,
    tick: u64,
) -> Result<TickOutcome, ApiError> {
    let store = state.operator.store();
    if !store.agent_enabled(&schedule.agent).await? {
        return Ok(TickOutcome::SkippedDisabled);
    }
    let run = RunId::new();
    if store.claim_tick(&schedule.agent, &schedule.decl.name, tick, run, rein::now_ms()).await?.is_some() {
        return Ok(TickOutcome::ClaimedElsewhere);
    }
    state.enqueue(tenant, served, schedule.decl.input.clone(), run).await?;
    tracing::info!(%run, agent = schedule.agent, schedule = schedule.decl.name, tick, "schedule started a run");
    Ok(TickOutcome::Fired)
}

fn count(state: &AppState, schedule: &Schedule, outcome: TickOutcome, by: u64) {
    state.metrics.schedule_ticks(&schedule.agent, &schedule.decl.name, outcome.as_str(), by);
}

/// `GET /v1/agents/{name}/schedules`: the agent's schedules with their next
/// fire times, in each schedule's time zone.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<RunsRead>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, served) = state.agent(&caller.tenant, &name).await?;
    let now_ms = rein::now_ms();
    let schedules: Vec<Value> = served
        .definition
        .schedules
        .iter()
        .map(|decl| {
            let next: Vec<Value> = match CronSchedule::of(decl) {
                Ok(cron) if decl.enabled => cron
                    .upcoming(now_ms, LISTED_FIRE_TIMES)
                    .into_iter()
                    .map(|ms| json!({ "at_ms": ms, "at": cron.local_time(ms) }))
                    .collect(),
                _ => Vec::new(),
            };
            json!({
                "name": decl.name,
                "cron": decl.cron,
                "timezone": decl.timezone,
                "input": decl.input,
                "enabled": decl.enabled,
                "max_lateness_ms": decl.max_lateness_ms,
                "next": next,
            })
        })
        .collect();
    Ok(Json(json!({ "agent": name, "schedules": schedules })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;
    /// 2026-01-01 00:00:00 UTC.
    const JAN_1: u64 = 1_767_225_600_000;

    fn schedule(cron: &str, timezone: &str, max_lateness_ms: u64) -> Schedule {
        let decl = ScheduleDecl {
            name: "s".into(),
            cron: cron.into(),
            timezone: timezone.into(),
            input: "go".into(),
            enabled: true,
            max_lateness_ms,
        };
        Schedule::new("agent", decl).unwrap()
    }

    #[test]
    fn a_tick_fires_once_when_it_falls_due() {
        let hourly = schedule("0 * * * *", "UTC", 5 * MINUTE);
        // Looked at just before and just after 01:00.
        let before = JAN_1 + 60 * MINUTE - 1;
        assert_eq!(due_ticks(&hourly, Some(JAN_1 + MINUTE), before), Due::default());
        let due = due_ticks(&hourly, Some(before), JAN_1 + 60 * MINUTE + 3);
        assert_eq!(due, Due { fire: Some(JAN_1 + 60 * MINUTE), skipped_late: 0 });
        // Looked at again: already handled.
        assert_eq!(due_ticks(&hourly, Some(JAN_1 + 60 * MINUTE + 3), JAN_1 + 61 * MINUTE), Due::default());
    }

    #[test]
    fn the_time_zone_decides_when() {
        // 09:00 in New York in January is 14:00 UTC.
        let nine = schedule("0 9 * * *", "America/New_York", 5 * MINUTE);
        let at_14_utc = JAN_1 + 14 * 60 * MINUTE;
        assert_eq!(due_ticks(&nine, Some(at_14_utc - 1), at_14_utc).fire, Some(at_14_utc));
        // 09:00 UTC is not it.
        let at_9_utc = JAN_1 + 9 * 60 * MINUTE;
        assert_eq!(due_ticks(&nine, Some(at_9_utc - 1), at_9_utc).fire, None);
    }

    #[test]
    fn a_missed_tick_within_max_lateness_fires_late_and_only_the_latest() {
        let minutely = schedule("* * * * *", "UTC", 5 * MINUTE);
        // Down from 00:00:30 to 00:10:20: ticks 00:01 … 00:10 are due; only
        // 00:10 fires.
        let due = due_ticks(&minutely, Some(JAN_1 + 30_000), JAN_1 + 10 * MINUTE + 20_000);
        assert_eq!(due, Due { fire: Some(JAN_1 + 10 * MINUTE), skipped_late: 9 });
        // A restarted server (nothing checked) fires the latest tick within
        // the window and counts nothing else.
        let due = due_ticks(&minutely, None, JAN_1 + 10 * MINUTE + 20_000);
        assert_eq!(due, Due { fire: Some(JAN_1 + 10 * MINUTE), skipped_late: 0 });
    }

    #[test]
    fn a_tick_later_than_max_lateness_is_skipped() {
        let daily = schedule("0 6 * * *", "UTC", 5 * MINUTE);
        let six = JAN_1 + 6 * 60 * MINUTE;
        // Exactly at the limit it still fires; a millisecond later it does not.
        assert_eq!(due_ticks(&daily, Some(six - 1), six + 5 * MINUTE).fire, Some(six));
        let due = due_ticks(&daily, Some(six - 1), six + 5 * MINUTE + 1);
        assert_eq!(due, Due { fire: None, skipped_late: 1 });
        // After a restart too, but nothing is counted.
        assert_eq!(due_ticks(&daily, None, six + 6 * MINUTE), Due::default());
    }

    #[test]
    fn across_a_daylight_saving_change_ticks_follow_the_wall_clock() {
        // Europe/Berlin springs forward on 2026-03-29: 02:00 CET becomes
        // 03:00 CEST (01:00 UTC). A daily 02:30 does not exist that day: it
        // fires at the first instant after the jump, 03:00 CEST, once.
        let march_29 = 1_774_742_400_000; // 00:00 UTC
        let half_past_two = schedule("30 2 * * *", "Europe/Berlin", 5 * MINUTE);
        // The 28th at 02:30 CET is 01:30 UTC.
        let day_before_0130_utc = march_29 - 24 * 60 * MINUTE + 90 * MINUTE;
        assert_eq!(half_past_two.cron.latest_at_or_before(march_29), Some(day_before_0130_utc));
        let jump = march_29 + 60 * MINUTE;
        assert_eq!(half_past_two.cron.next_after(march_29), Some(jump));
        assert_eq!(due_ticks(&half_past_two, Some(march_29), jump + 2_000), Due { fire: Some(jump), skipped_late: 0 });
        assert_eq!(due_ticks(&half_past_two, Some(jump + 2_000), march_29 + 3 * 60 * MINUTE), Due::default());
        // On the 30th 02:30 CEST is 00:30 UTC.
        let march_30_0030_utc = march_29 + 24 * 60 * MINUTE + 30 * MINUTE;
        assert_eq!(half_past_two.cron.next_after(jump), Some(march_30_0030_utc));

        // An hourly schedule keeps ticking every real hour across the jump:
        // 01:00 CET (00:00 UTC), then 03:00 CEST (01:00 UTC).
        let hourly = schedule("0 * * * *", "Europe/Berlin", 5 * MINUTE);
        assert_eq!(hourly.cron.next_after(march_29 - 1), Some(march_29));
        assert_eq!(hourly.cron.next_after(march_29), Some(march_29 + 60 * MINUTE));

        // Berlin falls back on 2026-10-25: 03:00 CEST becomes 02:00 CET, so
        // 02:30 happens twice; a fixed-time schedule fires once, at the
        // first (00:30 UTC).
        let october_25 = 1_792_886_400_000; // 00:00 UTC
        let first = october_25 + 30 * MINUTE;
        assert_eq!(half_past_two.cron.next_after(october_25), Some(first));
        let after = due_ticks(&half_past_two, Some(first), october_25 + 3 * 60 * MINUTE);
        assert_eq!(after, Due::default(), "02:30 fired a second time");
    }

    #[test]
    fn seconds_schedules_tick_every_second() {
        let every_second = schedule("* * * * * *", "UTC", 5_000);
        let due = due_ticks(&every_second, Some(JAN_1 + 1_000), JAN_1 + 2_001);
        assert_eq!(due, Due { fire: Some(JAN_1 + 2_000), skipped_late: 0 });
        assert_eq!(every_second.cron.upcoming(JAN_1, 3), [JAN_1 + 1_000, JAN_1 + 2_000, JAN_1 + 3_000]);
    }
}
