//! Who decides on calls that need a human. The CLI asks on the terminal;
//! without an approver, a call that needs approval escalates the run.

use async_trait::async_trait;
use rein_core::{ApprovalDecision, ApprovalRequest};
use rein_types::RunId;

/// Decides on tool calls that need human approval.
#[async_trait]
pub trait Approver: Send + Sync {
    /// One decision per request, matched by `call_id`.
    async fn decide(&self, run: RunId, requests: &[ApprovalRequest]) -> Vec<ApprovalDecision>;
}

/// No one is available: every request comes back `Unavailable`, which ends
/// the run as `escalated` with the reason.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoApprover;

#[async_trait]
impl Approver for NoApprover {
    async fn decide(&self, _run: RunId, requests: &[ApprovalRequest]) -> Vec<ApprovalDecision> {
        requests.iter().map(|r| ApprovalDecision::Unavailable { call_id: r.call_id.clone() }).collect()
    }
}
