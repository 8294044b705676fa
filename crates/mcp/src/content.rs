//! What a tool call's result becomes for the model.

use rein_types::ToolOutcome;
use rein_types::text::prefix_within as cut_str;
use rmcp::model::CallToolResult;
use serde_json::{Value, json};

/// Turns an MCP result into an outcome: `isError` results become errors
/// carrying the server's text; otherwise structured content is the data
/// when the server sends it, and the content blocks when it does not.
pub(crate) fn outcome(tool: &str, result: CallToolResult, max_result_bytes: usize) -> ToolOutcome {
    let blocks: Vec<Value> = result.content.iter().filter_map(|b| serde_json::to_value(b).ok()).collect();
    if result.is_error == Some(true) {
        let text = texts(&blocks);
        let message = if text.is_empty() {
            format!("`{tool}` failed without saying why")
        } else {
            format!("`{tool}` failed: {}", cut_str(&text, max_result_bytes))
        };
        return ToolOutcome::error(message);
    }
    let data = match result.structured_content {
        Some(structured) => structured,
        None if blocks.iter().all(is_text) => Value::String(texts(&blocks)),
        None => Value::Array(blocks.iter().map(simplify).collect()),
    };
    cut(data, max_result_bytes)
}

fn is_text(block: &Value) -> bool {
    block["type"] == "text"
}

fn texts(blocks: &[Value]) -> String {
    blocks.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n")
}

/// Binary content (images, audio, blobs) means nothing to a text model and
/// would flood its context: it is replaced by a note of its type and size.
fn simplify(block: &Value) -> Value {
    match block["type"].as_str() {
        Some("text") => block["text"].clone(),
        Some(kind @ ("image" | "audio")) => json!({
            "type": kind,
            "mime_type": block["mimeType"],
            "omitted": format!("{} bytes of base64 data", block["data"].as_str().map_or(0, str::len)),
        }),
        Some("resource") => {
            let resource = &block["resource"];
            match resource.get("blob").and_then(Value::as_str) {
                Some(blob) => json!({
                    "type": "resource",
                    "uri": resource["uri"],
                    "mime_type": resource["mimeType"],
                    "omitted": format!("{} bytes of base64 data", blob.len()),
                }),
                None => json!({ "type": "resource", "uri": resource["uri"], "text": resource["text"] }),
            }
        }
        _ => block.clone(),
    }
}

fn cut(data: Value, max_bytes: usize) -> ToolOutcome {
    let text = match &data {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if text.len() <= max_bytes {
        return ToolOutcome::ok(data);
    }
    ToolOutcome::Ok { data: Value::String(cut_str(&text, max_bytes).to_string()), truncated: true }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ContentBlock;

    #[test]
    fn text_content_is_the_data_and_is_error_an_error() {
        let ok = CallToolResult::success(vec![ContentBlock::text("Echo: hi")]);
        assert_eq!(outcome("echo", ok, 100), ToolOutcome::ok(json!("Echo: hi")));
        let failed = CallToolResult::error(vec![ContentBlock::text("no such file")]);
        match outcome("read", failed, 100) {
            ToolOutcome::Error { message, .. } => assert_eq!(message, "`read` failed: no such file"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_results_are_cut_on_a_character_boundary() {
        let ok = CallToolResult::success(vec![ContentBlock::text("é".repeat(10))]);
        assert_eq!(outcome("t", ok, 5), ToolOutcome::Ok { data: json!("éé"), truncated: true });
    }
}
