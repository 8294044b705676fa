//! Plain-language text: what the model is told when a call is refused, and
//! what a person is told when a run ends. Never a bare "max iterations
//! exceeded": each says what happened, what was gathered, and what to do.

use crate::policy::human_duration;
use rein_types::{LimitKind, Limits, Message, ModelError, PartialResult};

pub fn unknown_tool(name: &str, available: &[&str]) -> String {
    format!(
        "Error: there is no tool named `{name}`. Available tools: {}. Call one of these by its exact name, or answer without a tool.",
        available.join(", ")
    )
}

pub fn malformed_arguments(tool: &str, error: &serde_json::Error) -> String {
    format!(
        "Error: the arguments for `{tool}` are not valid JSON ({error}). Send the arguments as one JSON object matching the tool's parameter schema."
    )
}

pub fn invalid_arguments(tool: &str, violations: &[String]) -> String {
    format!(
        "Error: the arguments for `{tool}` do not match its parameter schema: {}. Fix these fields and call it again.",
        violations.join("; ")
    )
}

pub fn repeated_call(tool: &str, first_step: u32, observation: Option<&str>) -> String {
    match observation {
        Some(result) => format!(
            "Notice: you already called `{tool}` with exactly these arguments at step {first_step}, and it was not run again. Its result was: {result}. Use that result, try different arguments, or give your final answer. Repeating the same call once more will stop the run."
        ),
        None => format!(
            "Notice: this is the same `{tool}` call with the same arguments as another call in this step, so it was not run twice. Repeating it again will stop the run."
        ),
    }
}

pub fn call_limit(tool: &str, max: u32) -> String {
    format!(
        "Error: `{tool}` may be called at most {max} time(s) in one run and that limit is used up. Do not call it again; work with the results you have or hand off to a human."
    )
}

pub fn approval_rejected(tool: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!(
            "A human reviewer rejected the `{tool}` call ({reason}). It was not executed. Take another path or explain to the user what you would need."
        ),
        None => format!(
            "A human reviewer rejected the `{tool}` call. It was not executed. Take another path or explain to the user what you would need."
        ),
    }
}

fn gathered(partial: usize) -> String {
    match partial {
        0 => String::from("No tool results were gathered."),
        1 => String::from("1 tool result was gathered and is included below."),
        n => format!("{n} tool results were gathered and are included below."),
    }
}

pub fn waiting_for_approval(waiting: &[String]) -> String {
    format!(
        "The run is paused, durably, until a person decides on {}. Decide with `rein approvals approve|edit|reject ID` (from any process; the run then goes on there); `rein approvals list` shows what is waiting. A request nobody decides before it expires counts as rejected.",
        waiting.join(", ")
    )
}

pub fn needs_reconciliation(calls: &[String]) -> String {
    format!(
        "The run is paused: the process died while {} was in flight, and the tool is not idempotent, so it may or may not have taken effect. Check the system it acts on, then run `rein runs reconcile RUN --done RESULT` (it took effect), `--retry` (it did not; run it again with the same idempotency key) or `--fail` (end the run).",
        calls.join(", ")
    )
}

pub fn reconciled_failed(tool: &str, by: &str, reason: &str, partial: usize) -> String {
    format!(
        "{by} ended the run while reconciling `{tool}`: {reason}. {} Start a new run if the work is still needed.",
        gathered(partial)
    )
}

pub fn handed_off(reason: &str, partial: usize) -> String {
    format!("The agent handed the task to a human: {reason}. {} A person should pick this up.", gathered(partial))
}

pub fn cancelled(reason: &str, partial: usize) -> String {
    format!("The run was cancelled ({reason}). {} Start a new run if the work is still needed.", gathered(partial))
}

pub fn empty_answer(steps: u32, partial: usize) -> String {
    format!(
        "The model ended after {steps} step(s) without an answer or a tool call. {} Check the system prompt's stop conditions, or try a more capable model.",
        gathered(partial)
    )
}

pub fn answer_truncated(cap: Option<u32>) -> String {
    let cap = cap.map_or_else(|| String::from("the provider's default"), |c| format!("{c} tokens"));
    format!(
        "The model's final answer was cut off by its output limit ({cap}), so it is incomplete; the partial text is in the output. Raise [model] max_output_tokens, or ask for a shorter answer in the system prompt."
    )
}

pub fn content_filtered(partial: usize) -> String {
    format!(
        "The provider withheld the model's answer (content filter). {} Check the input for content the provider refuses, or hand the case to a human.",
        gathered(partial)
    )
}

pub fn output_rejected(problems: &[String], schema: &str) -> String {
    format!(
        "Your final answer must be one JSON value matching this JSON Schema: {schema}. It does not: {}. Reply with only the corrected JSON, no other text.",
        problems.join("; ")
    )
}

pub fn invalid_output(problems: &[String], repairs: u32) -> String {
    format!(
        "The model's final answer did not match the agent's output schema, even after {repairs} request(s) to fix it: {}. The last answer is in the output. Simplify the schema, describe the expected JSON in the system prompt, or use a model with a native structured-output mode.",
        problems.join("; ")
    )
}

pub fn unbacked_claims() -> String {
    String::from(
        "The agent gave its final answer, but the answer claims actions that no successful tool call in this run performed (see unbacked_claims). Treat those claims as unverified: check the target system before relying on them.",
    )
}

pub fn model_failed(error: &ModelError, partial: usize) -> String {
    format!("The model call failed: {}. {} {}", error.message, gathered(partial), error.advice())
}

pub fn tool_cascade(count: u32, tool: &str, error: &str, partial: usize) -> String {
    format!(
        "{count} tool calls failed in a row, the last one `{tool}`: {error}. The run was stopped rather than retried further. {} Check that the service behind `{tool}` is up and reachable, then run the agent again.",
        gathered(partial)
    )
}

pub fn invalid_calls(count: u32, messages: &[Message]) -> String {
    let last_problem = messages.iter().rev().find_map(|m| match m {
        Message::Tool { content, .. } if content.starts_with("Error:") => Some(content.as_str()),
        _ => None,
    });
    format!(
        "The model made {count} invalid tool calls in a row (unknown tools or arguments that do not match the schemas), so the run was stopped. Last problem: {} Improve the tool descriptions and parameter schemas, or use a model that is better at tool calling.",
        last_problem.unwrap_or("unknown")
    )
}

pub fn limit_reached(
    limit: LimitKind,
    detail: &str,
    limits: &Limits,
    partial: &[PartialResult],
    last_text: Option<&str>,
) -> String {
    let what_to_do = match limit {
        LimitKind::MaxSteps => format!(
            "If the task really needs more steps, raise [limits] max_steps (now {}); otherwise narrow the task or make the tools return what the agent needs in fewer calls.",
            limits.max_steps
        ),
        LimitKind::Timeout => format!(
            "If the task needs longer, raise [limits] timeout (now {}); check whether a slow tool or model caused the delay (`rein runs show` lists latencies).",
            human_duration(limits.timeout_ms)
        ),
        LimitKind::TokenBudget => String::from(
            "Raise [limits] max_tokens if this task is worth more, lower max_output_tokens, or shrink tool results (max_result_bytes).",
        ),
        LimitKind::CostBudget => {
            String::from("Raise [limits] max_cost_usd if this task is worth more, or route it to a cheaper model.")
        }
        LimitKind::RepeatedAction => String::from(
            "The agent was stuck repeating the same call. Check that the tool's result tells the model what it needs, and that the system prompt says when to stop.",
        ),
        LimitKind::NoProgress => String::from(
            "The agent kept calling tools without learning anything new. Check the tool results it received (`rein runs show`) and the prompt's stop conditions; consider a handoff to a human for such inputs.",
        ),
        LimitKind::ToolCalls => String::from("A tool's max_calls was used up."),
    };
    let said = match last_text {
        Some(text) => format!(" The last thing the model said: \"{}\".", preview(text, 200)),
        None => String::new(),
    };
    format!("The run stopped because {detail}. {}{said} {what_to_do}", gathered(partial.len()))
}

fn preview(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max).collect();
    cut.push('…');
    cut
}
