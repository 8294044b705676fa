//! Every failure answers with a status and `{"error": {"code", "message"}}`;
//! the code is stable, the message is for people.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rein::{JournalError, OperateError, ResumeError, RuntimeError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to send as `Retry-After` (429s).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    pub fn with_retry_after(self, seconds: u64) -> Self {
        Self { retry_after: Some(seconds), ..self }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<JournalError> for ApiError {
    fn from(error: JournalError) -> Self {
        match error {
            JournalError::NotFound(_) => Self::not_found(error.to_string()),
            JournalError::Ambiguous(_) => Self::bad_request("ambiguous_id", error.to_string()),
            JournalError::Conflict(_) => Self::new(StatusCode::CONFLICT, "run_conflict", error.to_string()),
            other => Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", other.to_string()),
        }
    }
}

impl From<OperateError> for ApiError {
    fn from(error: OperateError) -> Self {
        let message = error.to_string();
        match error {
            OperateError::Store(error) => error.into(),
            OperateError::Disabled(_) => Self::new(StatusCode::CONFLICT, "agent_disabled", message),
            OperateError::Held { .. } | OperateError::HeldElsewhere { .. } => {
                Self::new(StatusCode::CONFLICT, "run_held", message)
            }
            OperateError::NoSuchApproval(_) => Self::not_found(message),
            OperateError::NothingToRollBack(_) => Self::new(StatusCode::CONFLICT, "nothing_to_roll_back", message),
            OperateError::AmbiguousApproval { .. } => Self::bad_request("ambiguous_id", message),
            OperateError::BadApprovalId(_) => Self::bad_request("bad_id", message),
            OperateError::NotStarted(_) | OperateError::NotRegistered { .. } | OperateError::Load(_) => {
                Self::new(StatusCode::CONFLICT, "agent_unavailable", message)
            }
            OperateError::Runtime(RuntimeError::Resume { error, .. }) => match error {
                ResumeError::Finished(_) => Self::new(StatusCode::CONFLICT, "run_finished", message),
                ResumeError::Expired(_) => Self::new(StatusCode::CONFLICT, "approval_expired", message),
                ResumeError::InvalidEdit(_) => {
                    Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_arguments", message)
                }
                ResumeError::NoSuchApproval(_) | ResumeError::NotReconcilable(_) => Self::not_found(message),
                ResumeError::NoEvents | ResumeError::WrongAgent { .. } => {
                    Self::new(StatusCode::CONFLICT, "run_unavailable", message)
                }
            },
            OperateError::Runtime(RuntimeError::Journal(error)) => error.into(),
            OperateError::Runtime(RuntimeError::InvalidAgent(_)) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_agent", message)
            }
        }
    }
}
