//! The built-in `handoff_to_human` tool. The model calls it when a request
//! needs a person; the core intercepts the call and ends the run as
//! escalated, so it has a spec but no implementation.

use rein_types::{Approval, RiskTier, ToolName, ToolSpec};
use serde_json::json;

/// The name of the built-in handoff tool.
pub const HANDOFF_TOOL: &str = "handoff_to_human";

/// The spec of `handoff_to_human(reason)`: read-tier, never needs approval
/// (asking a human whether to ask a human helps no one), and described so the
/// model knows when to reach for it.
pub fn handoff_spec() -> ToolSpec {
    let Ok(name) = ToolName::new(HANDOFF_TOOL) else {
        // A fixed, valid literal (checked by the tests below); this branch
        // cannot be taken.
        unreachable!("`{HANDOFF_TOOL}` is a valid tool name")
    };
    let parameters = json!({
        "type": "object",
        "properties": {
            "reason": {
                "type": "string",
                "description": "Why a person is needed, written for the human who takes over: what the user wants, what has been done so far, and what is blocking."
            }
        },
        "required": ["reason"],
        "additionalProperties": false
    });
    let description = "Hand the conversation over to a human. Use this when the request needs a person: \
        refunds, exceptions to policy, legal or safety matters, an upset or angry customer, a request \
        outside what your tools can do, or whenever you are not confident you can answer correctly. \
        This ends your part of the conversation, so do not use it for questions you can answer with \
        your other tools.";
    let mut spec = ToolSpec::new(name, description, parameters, RiskTier::Read);
    spec.approval = Approval::Never;
    spec.idempotent = true;
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_spec_is_well_formed() {
        let spec = handoff_spec();
        assert_eq!(spec.name.as_str(), HANDOFF_TOOL);
        assert_eq!(spec.risk, RiskTier::Read);
        assert_eq!(spec.approval, Approval::Never);
        assert_eq!(spec.parameters["required"], json!(["reason"]));
        assert_eq!(spec.parameters["properties"]["reason"]["type"], "string");
        assert!(spec.description.contains("refund"));
    }
}
