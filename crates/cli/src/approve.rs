//! Asks on the terminal whether a call that needs approval may run, showing
//! what would happen: the tool, its arguments, its risk tier and the model's
//! stated reason.

use async_trait::async_trait;
use rein::{ApprovalDecision, ApprovalRequest, Approver, RunId};
use std::io::{BufRead, Write};

pub struct TerminalApprover;

fn who() -> String {
    crate::session::who(None)
}

fn ask(prompt: &str) -> Option<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}

fn decide_one(request: &ApprovalRequest) -> ApprovalDecision {
    let call_id = request.call_id.clone();
    eprintln!();
    eprintln!(
        "⚠ approval needed: `{}` ({} tool), approval id {}",
        request.tool,
        request.risk.as_str(),
        request.approval_id
    );
    eprintln!("  arguments: {}", serde_json::to_string_pretty(&request.arguments).unwrap_or_default());
    if let Some(reason) = &request.rationale {
        eprintln!("  model's reason: {reason}");
    }
    loop {
        let Some(answer) = ask("  [a]pprove, [e]dit, [r]eject? ") else {
            return ApprovalDecision::Unavailable { call_id };
        };
        match answer.to_lowercase().as_str() {
            "a" | "approve" | "y" | "yes" => return ApprovalDecision::Approve { call_id, by: who() },
            "r" | "reject" | "n" | "no" => {
                let reason = ask("  reason (optional): ").filter(|r| !r.is_empty());
                return ApprovalDecision::Reject { call_id, by: who(), reason };
            }
            "e" | "edit" => {
                let Some(text) = ask("  new arguments as one line of JSON: ") else {
                    return ApprovalDecision::Unavailable { call_id };
                };
                match serde_json::from_str(&text) {
                    Ok(arguments) => return ApprovalDecision::Edit { call_id, by: who(), arguments },
                    Err(error) => eprintln!("  not valid JSON ({error}); try again"),
                }
            }
            _ => eprintln!("  answer a, e or r"),
        }
    }
}

#[async_trait]
impl Approver for TerminalApprover {
    async fn decide(&self, _run: RunId, requests: &[ApprovalRequest]) -> Vec<ApprovalDecision> {
        let requests = requests.to_vec();
        // Reading the terminal blocks; keep it off the async workers.
        tokio::task::spawn_blocking(move || requests.iter().map(decide_one).collect()).await.unwrap_or_default()
    }
}
