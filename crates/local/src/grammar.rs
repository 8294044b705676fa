//! What the local model is allowed to say, as an llguidance grammar, and how
//! its output is read back into an answer or a tool call.
//!
//! A turn is either a final answer or exactly one tool call written as
//! `<tool_call>{"name": …, "arguments": …}</tool_call>`. The call's JSON is
//! constrained by a schema that is the `anyOf` of one branch per tool, each
//! fixing `name` to that tool and `arguments` to its parameters schema, so the
//! sampler can only produce a known tool with arguments that fit. A free-text
//! answer may not begin with `<`: that keeps the two branches apart from the
//! first character, so an answer can never be mistaken for a call.

use rein_types::{ToolChoice, ToolSpec};
use serde_json::{Value, json};

/// Opens a tool call in the model's output.
pub const CALL_OPEN: &str = "<tool_call>";
/// Closes a tool call in the model's output.
pub const CALL_CLOSE: &str = "</tool_call>";

/// What one turn's sampling is constrained to.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// Nothing: plain sampling (no tools, no answer schema).
    None,
    /// An llguidance Lark grammar.
    Lark(String),
}

/// What this turn may be, once the agent's [`ToolChoice`] is applied to
/// the conversation so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// An answer or a call, as the model chooses.
    Choose,
    /// A call to one of the tools.
    Call,
    /// An answer (the tools stay described, but cannot be called).
    Answer,
}

impl Turn {
    /// The turn `choice` allows, given whether the conversation already
    /// holds a tool result. `First` is "look it up, then answer": a call
    /// before any result, an answer after.
    pub fn for_choice(choice: ToolChoice, has_tool_result: bool) -> Turn {
        match choice {
            ToolChoice::Auto => Turn::Choose,
            ToolChoice::Required => Turn::Call,
            ToolChoice::First if has_tool_result => Turn::Answer,
            ToolChoice::First => Turn::Call,
        }
    }

    /// Whether this turn's output may be a tool call, given the tools.
    pub fn calls_possible(self, tools: &[ToolSpec]) -> bool {
        !tools.is_empty() && self != Turn::Answer
    }
}

/// The constraint for a turn with `tools` and an optional schema for the
/// final answer.
pub fn constraint(tools: &[ToolSpec], answer_schema: Option<&Value>, turn: Turn) -> Constraint {
    let call_allowed = turn.calls_possible(tools);
    let answer_allowed = !call_allowed || turn == Turn::Choose;
    if tools.is_empty() && answer_schema.is_none() {
        return Constraint::None;
    }
    let mut alternatives = Vec::new();
    let mut rules = Vec::new();
    if answer_allowed {
        alternatives.push("answer");
        match answer_schema {
            Some(schema) => rules.push(format!("answer: %json {}", guided(schema.clone()))),
            // `[^<]` keeps an answer from ever starting like a call.
            None => rules.push("answer: ANSWER\nANSWER: /[^<][\\s\\S]*/".to_owned()),
        }
    }
    if call_allowed {
        alternatives.push("call");
        rules.push(format!("call: \"{CALL_OPEN}\" call_json \"{CALL_CLOSE}\""));
        rules.push(format!("call_json: %json {}", guided(call_schema(tools))));
    }
    Constraint::Lark(format!("start: {}\n{}\n", alternatives.join(" | "), rules.join("\n")))
}

/// The schema of a call's JSON: one branch per tool.
pub fn call_schema(tools: &[ToolSpec]) -> Value {
    let branches: Vec<Value> = tools
        .iter()
        .map(|tool| {
            json!({
                "type": "object",
                "properties": {
                    "name": { "const": tool.name.as_str() },
                    "arguments": tool.parameters,
                },
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    match <[Value; 1]>::try_from(branches) {
        Ok([only]) => only,
        Err(branches) => json!({ "anyOf": branches }),
    }
}

/// `schema` with llguidance's compile options: compact separators (fewer
/// tokens for a small model to get wrong) and `lenient`, which skips
/// keywords llguidance cannot enforce (such as `format`) instead of refusing
/// the whole schema. Whatever it skips, the runtime still validates every
/// call and answer against the full schema.
fn guided(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.insert(
            "x-guidance".to_owned(),
            json!({ "item_separator": ", ", "key_separator": ": ", "whitespace_flexible": false, "lenient": true }),
        );
    }
    schema
}

/// A turn's output, read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Answer(String),
    Call { name: String, arguments: Value },
}

/// Why an output that looked like a call could not be read as one. Only
/// unconstrained output (or output cut short by the token cap) gets here.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the model's tool call could not be read: {0}")]
pub struct CallParseError(pub String);

/// Reads a turn's output: a call if it is written as one, else an answer.
pub fn parse(output: &str) -> Result<Parsed, CallParseError> {
    let trimmed = output.trim();
    let Some(body) = trimmed.strip_prefix(CALL_OPEN) else {
        return Ok(Parsed::Answer(output.to_owned()));
    };
    let body = body.strip_suffix(CALL_CLOSE).ok_or_else(|| CallParseError(format!("no closing {CALL_CLOSE}")))?;
    let value: Value = serde_json::from_str(body).map_err(|e| CallParseError(e.to_string()))?;
    let name = value
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| CallParseError("no \"name\" string".to_owned()))?
        .to_owned();
    let arguments = value.get("arguments").cloned().unwrap_or_else(|| json!({}));
    Ok(Parsed::Call { name, arguments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rein_types::{Approval, RiskTier, ToolName};

    fn tool(name: &str) -> ToolSpec {
        ToolSpec {
            name: ToolName::new(name).unwrap(),
            description: format!("{name} things"),
            parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}),
            risk: RiskTier::Read,
            approval: Approval::Never,
            idempotent: true,
            max_calls: None,
        }
    }

    #[test]
    fn no_tools_and_no_schema_is_unconstrained() {
        assert_eq!(constraint(&[], None, Turn::Choose), Constraint::None);
    }

    #[test]
    fn tools_allow_an_answer_or_a_call_unless_the_turn_says_which() {
        let Constraint::Lark(auto) = constraint(&[tool("a"), tool("b")], None, Turn::Choose) else { panic!() };
        assert!(auto.starts_with("start: answer | call\n"), "{auto}");
        assert!(auto.contains("\"const\":\"a\"") && auto.contains("\"const\":\"b\""), "{auto}");
        let Constraint::Lark(required) = constraint(&[tool("a")], None, Turn::Call) else { panic!() };
        assert!(required.starts_with("start: call\n"), "{required}");
        assert!(!required.contains("answer"), "{required}");
        let Constraint::Lark(answer) = constraint(&[tool("a")], None, Turn::Answer) else { panic!() };
        assert!(answer.starts_with("start: answer\n") && !answer.contains("call"), "{answer}");
    }

    #[test]
    fn first_means_a_call_then_an_answer() {
        assert_eq!(Turn::for_choice(ToolChoice::First, false), Turn::Call);
        assert_eq!(Turn::for_choice(ToolChoice::First, true), Turn::Answer);
        assert_eq!(Turn::for_choice(ToolChoice::Auto, true), Turn::Choose);
        assert_eq!(Turn::for_choice(ToolChoice::Required, true), Turn::Call);
        assert!(!Turn::Answer.calls_possible(&[tool("a")]));
        assert!(!Turn::Call.calls_possible(&[]));
    }

    #[test]
    fn an_answer_schema_replaces_free_text() {
        let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}}});
        let Constraint::Lark(grammar) = constraint(&[], Some(&schema), Turn::Choose) else { panic!() };
        assert!(grammar.starts_with("start: answer\nanswer: %json {"), "{grammar}");
        assert!(!grammar.contains("ANSWER"), "{grammar}");
    }

    #[test]
    fn one_tool_needs_no_any_of() {
        assert!(call_schema(&[tool("a")]).get("anyOf").is_none());
        assert_eq!(call_schema(&[tool("a"), tool("b")])["anyOf"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn parses_calls_and_answers() {
        assert_eq!(
            parse("<tool_call>{\"name\": \"a\", \"arguments\": {\"q\": \"x\"}}</tool_call>"),
            Ok(Parsed::Call { name: "a".into(), arguments: json!({"q": "x"}) })
        );
        assert_eq!(parse("The answer is 4."), Ok(Parsed::Answer("The answer is 4.".into())));
        assert!(parse("<tool_call>{\"name\": \"a\"").is_err());
        assert!(parse("<tool_call>{\"arguments\": {}}</tool_call>").is_err());
    }
}
