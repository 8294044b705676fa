//! Live progress on a terminal: one line per step, per tool call and per
//! limit, with tokens and cost so far. Written to stderr so stdout carries
//! only the answer.

use rein::{Event, EventKind, Hooks, RunInfo, StreamDelta, ToolOutcome, Usage};
use std::io::Write;
use std::sync::Mutex;

pub struct Progress {
    priced: bool,
    /// Stream the model's text to stdout as it arrives (stdout is a terminal).
    stream_text: bool,
    totals: Mutex<(Usage, f64)>,
    /// The text streamed during the current model call.
    streamed: Mutex<String>,
}

impl Progress {
    pub fn new(priced: bool, stream_text: bool) -> Self {
        Self { priced, stream_text, totals: Mutex::new((Usage::default(), 0.0)), streamed: Mutex::new(String::new()) }
    }

    /// Whether `answer` was already shown, streamed, as the last model text.
    pub fn streamed_answer(&self, answer: &str) -> bool {
        self.streamed.lock().is_ok_and(|text| !text.is_empty() && text.trim() == answer.trim())
    }
}

fn preview(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max { flat } else { flat.chars().take(max).collect::<String>() + "…" }
}

impl Hooks for Progress {
    fn wants_deltas(&self) -> bool {
        self.stream_text
    }

    fn on_model_delta(&self, _run: RunInfo<'_>, delta: &StreamDelta) {
        if let StreamDelta::Text(text) = delta {
            if let Ok(mut streamed) = self.streamed.lock() {
                streamed.push_str(text);
            }
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }

    fn on_event(&self, _run: RunInfo<'_>, event: &Event) {
        match &event.kind {
            EventKind::RunStarted { agent, agent_version, model, .. } => {
                eprintln!("▶ {agent} ({}) on {model}", agent_version.short());
            }
            EventKind::ModelRequested { step, phase, model, .. } => {
                if let Ok(mut streamed) = self.streamed.lock() {
                    streamed.clear();
                }
                eprintln!("· step {step}: {} on {model}…", phase.as_str().replace('_', " "));
            }
            EventKind::ModelResponded { usage, cost_usd, latency_ms, .. } => {
                if self.streamed.lock().is_ok_and(|text| !text.is_empty()) {
                    println!();
                }
                let Ok(mut totals) = self.totals.lock() else { return };
                totals.0 += *usage;
                totals.1 += cost_usd;
                let cost = if self.priced { format!(" · ${:.4}", totals.1) } else { String::new() };
                eprintln!("  {latency_ms} ms · {} tokens so far{cost}", totals.0.total());
            }
            EventKind::ToolCallRequested { tool, arguments, .. } => {
                eprintln!("  → {tool} {}", preview(&arguments.to_string(), 100));
            }
            EventKind::ToolCallReported { tool, report, .. } => {
                eprintln!("  · {tool}: {}", preview(&rein::report_line(report), 120));
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
            EventKind::ContextSummarised { replaced, .. } => {
                eprintln!("  ↺ context summarised ({replaced} messages replaced by a summary)");
            }
            EventKind::OutputRejected { errors, .. } => {
                eprintln!("  ✗ answer does not match the output schema: {}", preview(&errors.join("; "), 160));
            }
            EventKind::ApprovalRequested { tool, approval_id, .. } => {
                eprintln!("  ⏸ {tool} needs approval ({approval_id})");
            }
            EventKind::ReconciliationRequired { tool, idempotency_key, .. } => {
                eprintln!("  ⏸ {tool} may have run before the crash: needs reconciliation ({idempotency_key})");
            }
            EventKind::CallReconciled { tool, by, .. } => eprintln!("  reconciled {tool} by {by}"),
            EventKind::RunSuspended { status, .. } => eprintln!("⏸ {status}"),
            EventKind::RunResumed { paused_ms, .. } => eprintln!("▶ resumed after {paused_ms} ms"),
            EventKind::RunFinished { .. } => {}
        }
    }
}
