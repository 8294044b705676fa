//! Prometheus metrics at `/metrics`: what operators of agents in production
//! watch — runs by status, steps per run, run latency, tokens and cost by
//! agent and model, tool calls and errors by tool, suspensions — fed by a
//! runtime hook on every journaled event of the runs this server drives,
//! plus the unfinished runs in the store (the queue), counted at scrape,
//! and schedule ticks by outcome (fired here, claimed by another process,
//! skipped as late or because the agent was disabled).
//!
//! The recorder is this server's own, not the process-global one, so two
//! servers in one process (tests) keep separate figures.

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use rein::{Event, EventKind, Hooks, RunInfo, RunStatus, Store, ToolOutcome};
use std::sync::Arc;

/// Histogram buckets for steps per run, and for run latency in seconds.
const STEP_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0];
const SECOND_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

static METADATA: Metadata<'static> = Metadata::new("rein", Level::INFO, Some("rein_server::metrics"));

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Metrics {
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Full("rein_run_steps".into()), STEP_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("rein_run_duration_seconds".into()),
                    SECOND_BUCKETS,
                )
            });
        // The bucket lists are constants and non-empty, which is all the
        // builder checks; fall back to its defaults regardless.
        let recorder = builder.unwrap_or_else(|_| PrometheusBuilder::new()).build_recorder();
        let handle = recorder.handle();
        Self { recorder, handle }
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, String)], by: u64) {
        let key = Key::from_parts(name, labels.iter().map(|(k, v)| Label::new(*k, v.clone())).collect::<Vec<_>>());
        self.recorder.register_counter(&key, &METADATA).increment(by);
    }

    fn cost(&self, labels: &[(&'static str, String)], dollars: f64) {
        // Counters are integers: cost is counted in micro-dollars.
        self.counter("rein_cost_microdollars_total", labels, (dollars * 1e6).round() as u64);
    }

    fn histogram(&self, name: &'static str, labels: &[(&'static str, String)], value: f64) {
        let key = Key::from_parts(name, labels.iter().map(|(k, v)| Label::new(*k, v.clone())).collect::<Vec<_>>());
        self.recorder.register_histogram(&key, &METADATA).record(value);
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, String)], value: f64) {
        let key = Key::from_parts(name, labels.iter().map(|(k, v)| Label::new(*k, v.clone())).collect::<Vec<_>>());
        self.recorder.register_gauge(&key, &METADATA).set(value);
    }

    /// `by` ticks of `agent`'s schedule `schedule` that ended as `outcome`.
    pub(crate) fn schedule_ticks(&self, agent: &str, schedule: &str, outcome: &'static str, by: u64) {
        let labels = [("agent", agent.to_owned()), ("schedule", schedule.to_owned()), ("outcome", outcome.to_owned())];
        self.counter("rein_schedule_ticks_total", &labels, by);
    }

    /// The exposition text, with the queue counted now.
    pub async fn render(&self, store: &Arc<dyn Store>) -> String {
        if let Ok(unfinished) = store.unfinished_runs().await {
            for status in [RunStatus::Running, RunStatus::WaitingApproval, RunStatus::NeedsReconciliation] {
                let count = unfinished.iter().filter(|(run, _)| run.status == status).count();
                self.gauge("rein_runs_unfinished", &[("status", status.as_str().to_owned())], count as f64);
            }
        }
        if let Ok(depth) = store.queue_depth().await {
            self.gauge("rein_queue_runs", &[("state", "queued".to_owned())], depth.queued as f64);
            self.gauge("rein_queue_runs", &[("state", "claimed".to_owned())], depth.claimed as f64);
            // A gauge of a store-wide total: every process reports the same
            // count, so it must not be summed across them as a counter.
            self.gauge("rein_queue_lease_expiries", &[], depth.lease_expiries as f64);
        }
        self.handle.render()
    }
}

impl rein::worker::WorkerObserver for Metrics {
    fn claimed(&self, claim: &rein::Claim) {
        let taken_over = if claim.taken_over_from.is_some() { "true" } else { "false" };
        let labels = [("agent", claim.run.agent.clone()), ("taken_over", taken_over.to_owned())];
        self.counter("rein_runs_claimed_total", &labels, 1);
    }
}

impl Hooks for Metrics {
    fn on_event(&self, run: RunInfo<'_>, event: &Event) {
        let agent = || ("agent", run.agent.to_owned());
        match &event.kind {
            EventKind::RunStarted { .. } => self.counter("rein_runs_started_total", &[agent()], 1),
            EventKind::ModelResponded { usage, cost_usd, served_by, .. } => {
                let model = ("model", served_by.clone());
                let labels = [agent(), model.clone(), ("kind", "input".to_owned())];
                self.counter("rein_tokens_total", &labels, usage.input_tokens);
                let labels = [agent(), model.clone(), ("kind", "output".to_owned())];
                self.counter("rein_tokens_total", &labels, usage.output_tokens);
                self.cost(&[agent(), model], *cost_usd);
            }
            EventKind::ModelFailed { kind, .. } => {
                self.counter("rein_model_errors_total", &[agent(), ("kind", kind.as_str().to_owned())], 1)
            }
            EventKind::ToolCallExecuted { tool, outcome, .. } => {
                let result = match outcome {
                    ToolOutcome::Ok { .. } => "ok",
                    ToolOutcome::Error { .. } => "error",
                };
                let labels = [agent(), ("tool", tool.clone()), ("result", result.to_owned())];
                self.counter("rein_tool_calls_total", &labels, 1);
            }
            EventKind::ToolCallRejected { tool, reason, .. } => {
                let reason = serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned));
                let labels = [agent(), ("tool", tool.clone()), ("reason", reason.unwrap_or_default())];
                self.counter("rein_tool_calls_rejected_total", &labels, 1);
            }
            // Escalations to people: a tool call held for approval (a
            // run handed to a human ends as `escalated` in
            // rein_runs_finished_total).
            EventKind::ApprovalRequested { tool, .. } => {
                self.counter("rein_approvals_requested_total", &[agent(), ("tool", tool.clone())], 1)
            }
            EventKind::RunSuspended { status, .. } => {
                self.counter("rein_runs_suspended_total", &[agent(), ("status", status.as_str().to_owned())], 1)
            }
            EventKind::RunFinished { status, steps, duration_ms, .. } => {
                self.counter("rein_runs_finished_total", &[agent(), ("status", status.as_str().to_owned())], 1);
                self.histogram("rein_run_steps", &[agent()], f64::from(*steps));
                self.histogram("rein_run_duration_seconds", &[agent()], *duration_ms as f64 / 1000.0);
            }
            _ => {}
        }
    }
}
