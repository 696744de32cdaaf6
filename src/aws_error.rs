//! Classifies AWS SDK errors into what the controller acts on and reports.

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// What kind of failure an AWS call had, as far as the controller cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// Throttled by AWS: retry later.
    Throttled,
    /// IAM, KMS or a resource policy refused the call.
    AccessDenied,
    /// The secret does not exist.
    NotFound,
    /// A secret with that name already exists.
    AlreadyExists,
    /// The secret is scheduled for deletion.
    MarkedForDeletion,
    /// Anything else (network, 5xx, invalid request...).
    Other,
}

impl AwsErrorKind {
    /// The kind as a metric label.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::AccessDenied => "access_denied",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::MarkedForDeletion => "marked_for_deletion",
            Self::Other => "error",
        }
    }
}

/// A failed AWS call: which operation, what kind of failure, and AWS's own message. AWS error
/// messages never contain the secret value, and the request inputs are not included here.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service} {operation} failed: {message}")]
pub struct AwsError {
    /// The service, e.g. `Secrets Manager`.
    pub service: &'static str,
    /// The API operation, e.g. `PutSecretValue`.
    pub operation: &'static str,
    /// The classification.
    pub kind: AwsErrorKind,
    /// AWS's error code and message, or the transport error.
    pub message: String,
}

impl AwsError {
    /// Classifies an SDK error from `service`'s `operation`.
    pub fn from_sdk<E, R>(service: &'static str, operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = err.code().map(str::to_owned);
        let aws_message = err.message().map(str::to_owned);
        let kind = classify(code.as_deref(), aws_message.as_deref());
        let message = match (code, aws_message) {
            (Some(code), Some(msg)) => format!("{code}: {msg}"),
            (Some(code), None) => code,
            _ => DisplayErrorContext(&err).to_string(),
        };
        Self {
            service,
            operation,
            kind,
            message: truncate(message),
        }
    }

    /// A response the operator cannot use, e.g. one missing a required field.
    pub fn unusable_response(service: &'static str, operation: &'static str, message: impl Into<String>) -> Self {
        Self {
            service,
            operation,
            kind: AwsErrorKind::Other,
            message: truncate(message.into()),
        }
    }
}

fn classify(code: Option<&str>, message: Option<&str>) -> AwsErrorKind {
    match code {
        Some(
            "ThrottlingException" | "TooManyRequestsException" | "RequestLimitExceeded" | "LimitExceededException",
        ) => AwsErrorKind::Throttled,
        Some("AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException" | "InvalidClientTokenId") => {
            AwsErrorKind::AccessDenied
        }
        Some("ResourceNotFoundException") => AwsErrorKind::NotFound,
        Some("ResourceExistsException") => AwsErrorKind::AlreadyExists,
        Some("InvalidRequestException")
            if message.is_some_and(|m| m.contains("marked for deletion") || m.contains("scheduled for deletion")) =>
        {
            AwsErrorKind::MarkedForDeletion
        }
        _ => AwsErrorKind::Other,
    }
}

/// Error text ends up in conditions and Events, which have size limits; keep it short.
fn truncate(mut message: String) -> String {
    const MAX: usize = 512;
    if message.len() > MAX {
        let mut end = MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes() {
        assert_eq!(classify(Some("ThrottlingException"), None), AwsErrorKind::Throttled);
        assert_eq!(
            classify(Some("AccessDeniedException"), None),
            AwsErrorKind::AccessDenied
        );
        assert_eq!(
            classify(Some("ResourceNotFoundException"), None),
            AwsErrorKind::NotFound
        );
        assert_eq!(
            classify(Some("ResourceExistsException"), None),
            AwsErrorKind::AlreadyExists
        );
        assert_eq!(
            classify(
                Some("InvalidRequestException"),
                Some("You can't perform this operation on the secret because it was marked for deletion.")
            ),
            AwsErrorKind::MarkedForDeletion
        );
        assert_eq!(
            classify(Some("InvalidRequestException"), Some("other")),
            AwsErrorKind::Other
        );
        assert_eq!(classify(None, None), AwsErrorKind::Other);
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let cut = truncate("é".repeat(600));
        assert!(cut.len() <= 512 + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
