//! A conversation as chat-template messages for a local model: the tools
//! described in the system message (a small model has no native tool
//! format), earlier calls written the way the model is constrained to write
//! them, and tool results as user messages (small chat models know no `tool`
//! role). On a turn that must answer, the calls are left out and their
//! results join the question they serve, as context: a small model shown
//! the call syntax tends to write it again inside its answer, and reads a
//! result sent as a reply of the user's as a complaint.

use crate::grammar::{CALL_CLOSE, CALL_OPEN, Turn};
use rein_types::{Message, ToolSpec};
use serde_json::Value;

/// One message for the chat template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

/// The messages to render with the model's chat template.
pub fn chat_messages(messages: &[Message], tools: &[ToolSpec], turn: Turn) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    let tool_guide = (!tools.is_empty() && turn != Turn::Answer).then(|| tool_guide(tools, turn));
    let mut guide_placed = false;
    for message in messages {
        match message {
            Message::System { text } => {
                let mut content = text.clone();
                if let Some(guide) = tool_guide.as_ref().filter(|_| !guide_placed) {
                    content.push_str("\n\n");
                    content.push_str(guide);
                    guide_placed = true;
                }
                out.push(ChatMessage { role: "system", content });
            }
            Message::User { text } => out.push(ChatMessage { role: "user", content: text.clone() }),
            Message::Assistant { text, .. } if turn == Turn::Answer => {
                if let Some(text) = text.as_ref().filter(|t| !t.trim().is_empty()) {
                    out.push(ChatMessage { role: "assistant", content: text.clone() });
                }
            }
            Message::Assistant { text, tool_calls } => {
                let mut content = text.clone().unwrap_or_default();
                for call in tool_calls {
                    // Name first, as the grammar makes the model write it.
                    let arguments: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
                    let name = Value::String(call.name.clone());
                    content
                        .push_str(&format!("{CALL_OPEN}{{\"name\": {name}, \"arguments\": {arguments}}}{CALL_CLOSE}"));
                }
                out.push(ChatMessage { role: "assistant", content });
            }
            Message::Tool { name, content, .. } if turn == Turn::Answer => {
                let context = format!("\n\nResult of {name}:\n{content}");
                match out.iter_mut().rev().find(|m| m.role == "user") {
                    Some(question) => question.content.push_str(&context),
                    None => out.push(ChatMessage { role: "user", content: context.trim_start().to_owned() }),
                }
            }
            Message::Tool { name, content, .. } => {
                out.push(ChatMessage { role: "user", content: format!("Result of {name}:\n{content}") })
            }
        }
    }
    if let Some(guide) = tool_guide.filter(|_| !guide_placed) {
        out.insert(0, ChatMessage { role: "system", content: guide });
    }
    out
}

fn tool_guide(tools: &[ToolSpec], turn: Turn) -> String {
    let mut guide = String::from("You can call these tools:\n");
    for tool in tools {
        guide.push_str(&format!("- {}: {} Arguments: {}\n", tool.name, tool.description.trim(), tool.parameters));
    }
    guide.push_str(&format!(
        "To call a tool, reply with only {CALL_OPEN}{{\"name\": \"TOOL\", \"arguments\": {{...}}}}{CALL_CLOSE}"
    ));
    guide.push_str(match turn {
        Turn::Choose => ". When you have what you need, answer in plain text.",
        Turn::Call => ". Call exactly one tool now.",
        Turn::Answer => ". You have the tool results you need: answer in plain text now, without calling a tool.",
    });
    guide
}

#[cfg(test)]
mod tests {
    use super::*;
    use rein_types::{RiskTier, ToolCall, ToolCallId, ToolName};
    use serde_json::json;

    fn lookup() -> ToolSpec {
        ToolSpec::new(
            ToolName::new("lookup").unwrap(),
            "Find an order.",
            json!({"type": "object", "properties": {"id": {"type": "integer"}}}),
            RiskTier::Read,
        )
    }

    #[test]
    fn tools_are_described_in_the_system_message_and_calls_replayed_in_call_syntax() {
        let messages = vec![
            Message::System { text: "Be brief.".into() },
            Message::User { text: "Where is order 7?".into() },
            Message::Assistant {
                text: None,
                tool_calls: vec![ToolCall {
                    id: ToolCallId("c1".into()),
                    name: "lookup".into(),
                    arguments: "{\"id\":7}".into(),
                }],
            },
            Message::Tool { call_id: ToolCallId("c1".into()), name: "lookup".into(), content: "shipped".into() },
        ];
        let chat = chat_messages(&messages, &[lookup()], Turn::Choose);
        assert_eq!(chat.len(), 4);
        assert!(chat[0].content.starts_with("Be brief.\n\nYou can call these tools:\n- lookup: Find an order."));
        assert_eq!(chat[2].content, "<tool_call>{\"name\": \"lookup\", \"arguments\": {\"id\":7}}</tool_call>");
        assert_eq!(chat[3], ChatMessage { role: "user", content: "Result of lookup:\nshipped".into() });

        let answer = chat_messages(&messages, &[lookup()], Turn::Answer);
        assert_eq!(answer.len(), 2);
        assert_eq!(answer[0].content, "Be brief.");
        assert_eq!(answer[1].content, "Where is order 7?\n\nResult of lookup:\nshipped");
        assert!(answer.iter().all(|m| !m.content.contains(CALL_OPEN)));
    }

    #[test]
    fn without_a_system_message_the_tool_guide_gets_its_own() {
        let chat = chat_messages(&[Message::User { text: "hi".into() }], &[lookup()], Turn::Call);
        assert_eq!(chat[0].role, "system");
        assert!(chat[0].content.ends_with("Call exactly one tool now."));
        assert_eq!(chat[1].role, "user");
        assert_eq!(chat_messages(&[Message::User { text: "hi".into() }], &[], Turn::Choose).len(), 1);
    }
}
