//! Errors at the function edge, split into retryable and permanent so that
//! SQS redrive and Step Functions `Retry` only repeat what can succeed.

use lambda_runtime::Diagnostic;

/// The `errorType` of a failure worth retrying (throttling, a service or
/// storage outage). Step Functions retries match on it.
pub const RETRYABLE: &str = "Sluice.Retryable";
/// The `errorType` of a failure that will fail again (bad input, bad config,
/// a refused schema change): retrying it only delays the dead-letter queue.
pub const PERMANENT: &str = "Sluice.Permanent";

/// A failed invocation.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FunctionError {
    pub retryable: bool,
    pub message: String,
}

impl FunctionError {
    pub fn permanent(message: impl Into<String>) -> Self {
        FunctionError {
            retryable: false,
            message: message.into(),
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        FunctionError {
            retryable: true,
            message: message.into(),
        }
    }

    /// The Lambda error type: [`RETRYABLE`] or [`PERMANENT`].
    pub fn error_type(&self) -> &'static str {
        if self.retryable { RETRYABLE } else { PERMANENT }
    }
}

impl From<sluice::Error> for FunctionError {
    fn from(e: sluice::Error) -> Self {
        FunctionError {
            retryable: e.is_retryable(),
            message: sluice::error::describe(&e),
        }
    }
}

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Diagnostic {
        Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.message,
        }
    }
}
