//! Budget arithmetic for the pre-call check. A run must stop *before* a call
//! that could overspend, so each check assumes the worst case: the estimated
//! prompt plus the call's whole output cap.

use rein_types::{AgentSpec, LimitKind, Limits, ModelPrice, Usage};

/// Output tokens assumed for a call when the agent sets no cap. Chosen to be
/// pessimistic for an agent step (a tool call or a short answer).
pub const ASSUMED_OUTPUT_TOKENS: u64 = 1024;

pub enum BudgetCheck {
    Within { estimated_tokens: u64 },
    Exceeded { limit: LimitKind, detail: String },
}

pub fn check_budget(
    spec: &AgentSpec,
    price: Option<ModelPrice>,
    used_tokens: u64,
    spent_usd: f64,
    estimated_prompt: u64,
) -> BudgetCheck {
    let output_cap = spec.settings.max_output_tokens.map_or(ASSUMED_OUTPUT_TOKENS, u64::from);
    let estimated_tokens = estimated_prompt + output_cap;
    if let Some(max) = spec.limits.max_tokens {
        let worst = used_tokens + estimated_tokens;
        if worst > max {
            return BudgetCheck::Exceeded {
                limit: LimitKind::TokenBudget,
                detail: format!(
                    "the next model call could use up to {estimated_tokens} tokens (about {estimated_prompt} of prompt plus an output cap of {output_cap}), which would bring the run to {worst} of its {max}-token budget; {used_tokens} used so far"
                ),
            };
        }
    }
    if let (Some(max), Some(price)) = (spec.limits.max_cost_usd, price) {
        let next = Usage { input_tokens: estimated_prompt, output_tokens: output_cap, cached_input_tokens: 0 };
        let worst = spent_usd + price.cost(&next);
        if worst > max {
            return BudgetCheck::Exceeded {
                limit: LimitKind::CostBudget,
                detail: format!(
                    "the next model call could cost up to ${:.4}, which would bring the run to ${worst:.4} of its ${max:.4} budget; ${spent_usd:.4} spent so far",
                    price.cost(&next)
                ),
            };
        }
    }
    BudgetCheck::Within { estimated_tokens }
}

pub fn timeout_detail(limits: &Limits) -> String {
    format!("the run passed its wall-clock limit of {}", human_duration(limits.timeout_ms))
}

pub fn human_duration(ms: u64) -> String {
    if ms.is_multiple_of(60_000) && ms >= 60_000 {
        format!("{} min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}
