//! The one error type of the API. Every failure a handler can meet becomes
//! an [`ApiError`] and leaves as JSON: `{"error": "...", "field": "..."}`,
//! plus `"errors": [...]` when there is a list (config reload).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::core::admin::AdminError;

/// An error answer: status, message, and the request field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The body field or query parameter that is wrong, if one is.
    pub field: Option<String>,
    /// Several messages (config reload errors).
    pub errors: Vec<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    errors: &'a [String],
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
            errors: Vec::new(),
        }
    }

    /// Sets the field at fault.
    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// 400: the request cannot be understood (bad JSON, wrong type, unknown field).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 422: well formed, but a value is not acceptable.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message).field(field)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn not_implemented(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_IMPLEMENTED, message)
    }

    pub fn unknown_pop(name: &str) -> ApiError {
        ApiError::not_found(format!("unknown PoP {name:?}"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        let status = match e {
            AdminError::UnknownPop(_) => StatusCode::NOT_FOUND,
            AdminError::LastPop(_) | AdminError::NotOverridden(_) => StatusCode::CONFLICT,
            AdminError::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let err = ApiError::new(status, e.to_string());
        match e {
            AdminError::LastPop(_) => err.field("force"),
            _ => err,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            field: self.field.as_deref(),
            errors: &self.errors,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"anypop\""),
            );
        }
        resp
    }
}
