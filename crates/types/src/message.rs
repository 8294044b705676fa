//! The provider-neutral conversation model. Provider wire types stay private
//! to their adapters and convert to and from these.

use crate::ids::ToolCallId;
use serde::{Deserialize, Serialize};

/// One tool call as the model emitted it. `arguments` is kept as the raw text
/// the model produced: malformed JSON is a model mistake the control layer
/// reports back, so it must survive until then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: ToolCallId,
    pub name: String,
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    System {
        text: String,
    },
    User {
        text: String,
    },
    Assistant {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The observation returned for one tool call.
    Tool {
        call_id: ToolCallId,
        name: String,
        content: String,
    },
}

impl Message {
    /// Characters of text this message puts in a prompt; the basis of the
    /// pre-call token estimate.
    pub fn text_len(&self) -> usize {
        match self {
            Message::System { text } | Message::User { text } => text.len(),
            Message::Assistant { text, tool_calls } => {
                text.as_ref().map_or(0, String::len)
                    + tool_calls.iter().map(|c| c.name.len() + c.arguments.len() + c.id.0.len()).sum::<usize>()
            }
            Message::Tool { call_id, name, content } => call_id.0.len() + name.len() + content.len(),
        }
    }
}
