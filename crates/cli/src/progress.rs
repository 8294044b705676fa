//! Live progress on a terminal: one line per step, per tool call and per
//! limit, with tokens and cost so far. Written to stderr so stdout carries
//! only the answer.

use rein::{Event, EventKind, Hooks, RunInfo, ToolOutcome, Usage};
use std::sync::Mutex;

pub struct Progress {
    priced: bool,
    totals: Mutex<(Usage, f64)>,
}

impl Progress {
    pub fn new(priced: bool) -> Self {
        Self { priced, totals: Mutex::new((Usage::default(), 0.0)) }
    }
}

fn preview(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max { flat } else { flat.chars().take(max).collect::<String>() + "…" }
}

impl Hooks for Progress {
    fn on_event(&self, _run: RunInfo<'_>, event: &Event) {
        match &event.kind {
            EventKind::RunStarted { agent, agent_version, model, .. } => {
                eprintln!("▶ {agent} ({}) on {model}", agent_version.short());
            }
            EventKind::ModelRequested { step, .. } => eprintln!("· step {step}: thinking…"),
            EventKind::ModelResponded { usage, cost_usd, latency_ms, .. } => {
                let Ok(mut totals) = self.totals.lock() else { return };
                totals.0 += *usage;
                totals.1 += cost_usd;
                let cost = if self.priced { format!(" · ${:.4}", totals.1) } else { String::new() };
                eprintln!("  {latency_ms} ms · {} tokens so far{cost}", totals.0.total());
            }
            EventKind::ToolCallRequested { tool, arguments, .. } => {
                eprintln!("  → {tool} {}", preview(&arguments.to_string(), 100));
            }
            EventKind::ToolCallExecuted { tool, outcome, latency_ms, .. } => match outcome {
                ToolOutcome::Ok { .. } => eprintln!("  ✓ {tool} ({latency_ms} ms)"),
                ToolOutcome::Error { message, .. } => {
                    eprintln!("  ✗ {tool}: {} ({latency_ms} ms)", preview(message, 120))
                }
            },
            EventKind::ToolCallRejected { tool, message, .. } => {
                eprintln!("  ✗ {tool} refused: {}", preview(message, 120));
            }
            EventKind::ApprovalDecided { tool, approved, by, .. } => {
                eprintln!("  {} {tool} by {by}", if *approved { "approved" } else { "rejected" });
            }
            EventKind::LimitHit { detail, .. } => eprintln!("  ! limit: {detail}"),
            EventKind::ModelFailed { message, .. } => eprintln!("  ✗ model: {}", preview(message, 160)),
            EventKind::ControlNotice { message, .. } => eprintln!("  ! {message}"),
            EventKind::RunFinished { .. } => {}
        }
    }
}
