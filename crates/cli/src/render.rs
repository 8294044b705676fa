//! Text rendering for people: the run result, the run list and the step tree.

use rein::{CallRecord, RunId, RunOutcome, RunRecord, RunStatus, RunSummary, ToolOutcome};

fn cut(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max { flat } else { flat.chars().take(max).collect::<String>() + "…" }
}

fn dollars(cost: f64) -> String {
    format!("${cost:.4}")
}

/// The run's answer on stdout (unless it was already streamed there); how
/// it ended on stderr.
pub fn outcome(outcome: &RunOutcome, already_streamed: bool) {
    if let Some(output) = &outcome.output
        && outcome.status == RunStatus::Succeeded
        && !already_streamed
    {
        println!("{output}");
    }
    eprintln!(
        "{} · {} step(s) · {} in / {} out tokens · {} · {} ms · run {}",
        outcome.status,
        outcome.steps,
        outcome.usage.input_tokens,
        outcome.usage.output_tokens,
        dollars(outcome.cost_usd),
        outcome.duration_ms,
        outcome.run_id
    );
    if outcome.status != RunStatus::Succeeded || !outcome.unbacked_claims.is_empty() {
        eprintln!("{}", outcome.explanation);
    }
    for claim in &outcome.unbacked_claims {
        eprintln!("  unverified claim: \"{claim}\"");
    }
    for action in &outcome.pending {
        pending(action);
    }
    if outcome.status != RunStatus::Succeeded {
        if let Some(output) = &outcome.output {
            eprintln!("last model output: {}", cut(output, 400));
        }
        for partial in &outcome.partial_results {
            eprintln!("  gathered (step {}) {}: {}", partial.step, partial.tool, cut(&partial.data.to_string(), 200));
        }
    }
}

/// One call a suspended run waits on, with the command that settles it.
pub fn pending(action: &rein::PendingAction) {
    match action.kind {
        rein::PendingKind::Approval => {
            eprintln!("  waiting for approval {}: `{}` ({})", action.id, action.tool, action.risk.as_str());
            eprintln!("    arguments: {}", cut(&action.arguments.to_string(), 300));
            if let Some(reason) = &action.rationale {
                eprintln!("    model's reason: {}", cut(reason, 300));
            }
            if let Some(expires) = action.expires_at_ms {
                eprintln!("    expires: {} UTC", timestamp(expires));
            }
            eprintln!("    decide: rein approvals approve|reject|edit {}", action.id);
        }
        rein::PendingKind::Reconciliation => {
            eprintln!(
                "  needs reconciliation {}: `{}` with {}",
                action.id,
                action.tool,
                cut(&action.arguments.to_string(), 300)
            );
            eprintln!("    settle: rein runs reconcile {} --done RESULT | --retry | --fail", action.id);
        }
    }
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm). A date
/// crate for one timestamp format is not worth its build time.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn timestamp(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub fn run_list(runs: &[RunSummary]) {
    if runs.is_empty() {
        println!("no runs");
        return;
    }
    println!(
        "{:<36}  {:<20}  {:<20}  {:>5}  {:>8}  {:>9}  {:<19}  INPUT",
        "RUN", "AGENT", "STATUS", "STEPS", "TOKENS", "COST", "STARTED (UTC)"
    );
    for run in runs {
        println!(
            "{:<36}  {:<20}  {:<20}  {:>5}  {:>8}  {:>9}  {:<19}  {}",
            run.run_id.to_string(),
            cut(&run.agent, 20),
            run.status.as_str(),
            run.steps,
            run.usage.total(),
            dollars(run.cost_usd),
            timestamp(run.started_at_ms),
            cut(&run.input_preview, 40)
        );
    }
}

fn call_line(call: &CallRecord) -> String {
    let arguments = call.arguments.as_ref().map(|a| cut(&a.to_string(), 80)).unwrap_or_default();
    let result = match (call.outcome.as_ref(), call.rejected.as_ref(), call.message.as_ref()) {
        (Some(ToolOutcome::Ok { data, truncated }), _, _) => {
            format!("ok{} {}", if *truncated { " (truncated)" } else { "" }, cut(&data.to_string(), 80))
        }
        (Some(ToolOutcome::Error { message, .. }), _, _) => format!("error: {}", cut(message, 100)),
        (None, Some(reason), message) => {
            format!(
                "refused ({}): {}",
                serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                cut(message.map_or("", |m| m.as_str()), 100)
            )
        }
        (None, None, _) => "no result recorded".into(),
    };
    let approval = call.approval.as_ref().map(|a| format!(" [{a}]")).unwrap_or_default();
    let reconciliation = call.reconciliation.as_ref().map(|r| format!(" [reconciliation: {r}]")).unwrap_or_default();
    format!("{} {arguments} → {result} ({} ms){approval}{reconciliation}", call.tool, call.latency_ms)
}

pub fn run_tree(run_id: RunId, record: &RunRecord) {
    let short_version: String = record.agent_version.chars().take(12).collect();
    println!("run {run_id}");
    println!(
        "agent {} (version {short_version}) · model {} · started {} UTC",
        record.agent,
        record.model,
        timestamp(record.started_at_ms)
    );
    println!("input: {}", cut(&record.input, 200));
    for step in &record.steps {
        println!(
            "├─ step {} · {} · {} · {} ms · {} in / {} out tokens · {}",
            step.step,
            step.phase.as_str(),
            step.model,
            step.latency_ms,
            step.usage.input_tokens,
            step.usage.output_tokens,
            dollars(step.cost_usd)
        );
        if let Some(error) = &step.error {
            println!("│  ✗ model error: {}", cut(error, 200));
        }
        for call in &step.calls {
            println!("│  ├─ {}", call_line(call));
            for report in &call.reports {
                println!("│  │    · {}", cut(&rein::report_line(report), 160));
            }
        }
        if let Some(text) = &step.text {
            println!("│  └─ said: {}", cut(text, 200));
        }
        for notice in &step.notices {
            println!("│  ! {notice}");
        }
    }
    for line in &record.lifecycle {
        println!("│  ↻ {line}");
    }
    match &record.finished {
        Some(finished) => {
            println!("└─ {} ({}) after {} ms", finished.status, finished.reason, finished.duration_ms);
            println!("   {}", finished.explanation);
            if let Some(output) = &finished.output {
                println!("   output: {}", cut(output, 400));
            }
            for claim in &finished.unbacked_claims {
                println!("   unverified claim: \"{claim}\"");
            }
        }
        None if record.status.is_suspended() => println!("└─ {}: waiting for a person", record.status),
        None => println!("└─ still running, or interrupted (no run_finished event; `rein runs resume` takes it up)"),
    }
    println!(
        "totals: {} step(s) · model {} ms · tools {} ms · {} in / {} out tokens · {}",
        record.steps.len(),
        record.model_latency_ms,
        record.tool_latency_ms,
        record.usage.input_tokens,
        record.usage.output_tokens,
        dollars(record.cost_usd)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_795_000_000_000), "2026-11-18 11:06:40");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29 00:00:00");
    }
}
