//! API errors: the library's typed errors mapped to an HTTP status and a JSON
//! body `{"error": {"code", "message"}}`, and each code's command-line exit code
//! (so the command line answers the same through the daemon as directly).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::cli::events::FieldError;
use crate::cli::{EXIT_BAD_INPUT, EXIT_REFUSED};
use stocksync::error::{EventError, InputError, NodeError, StoreError};

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code (see [`CODES`]).
    pub code: &'static str,
    /// A human-readable message (the same text the command line prints).
    pub message: String,
}

/// The JSON body of an error answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error inside [`ErrorBody`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable machine-readable code.
    pub code: String,
    /// A human-readable message.
    pub message: String,
}

/// Every error code with its HTTP status and command-line exit code.
pub const CODES: &[(&str, u16, i32)] = &[
    ("malformed_request", 400, EXIT_BAD_INPUT),
    ("unauthorized", 401, 1),
    ("not_permitted", 403, EXIT_BAD_INPUT),
    ("not_found", 404, 1),
    ("method_not_allowed", 405, 1),
    ("insufficient_rights", 409, EXIT_REFUSED),
    ("duplicate_event_id", 409, EXIT_BAD_INPUT),
    ("reservation_exists", 409, EXIT_BAD_INPUT),
    ("own_history_conflict", 409, 1),
    ("recovering_own_history", 409, 1),
    ("own_history_in_later_epoch", 409, 1),
    ("payload_too_large", 413, EXIT_BAD_INPUT),
    ("invalid_input", 422, EXIT_BAD_INPUT),
    ("missing_field", 422, EXIT_BAD_INPUT),
    ("field_not_applicable", 422, EXIT_BAD_INPUT),
    ("unknown_kind", 422, EXIT_BAD_INPUT),
    ("unknown_sku", 422, EXIT_BAD_INPUT),
    ("record_not_allowed", 422, EXIT_BAD_INPUT),
    ("unknown_reservation", 422, EXIT_BAD_INPUT),
    ("reservation_pool_mismatch", 422, EXIT_BAD_INPUT),
    ("reservation_exceeded", 422, EXIT_BAD_INPUT),
    ("transfer_to_same_location", 422, EXIT_BAD_INPUT),
    ("self_grant", 422, EXIT_BAD_INPUT),
    ("overflow", 422, EXIT_BAD_INPUT),
    ("event_refused", 422, EXIT_BAD_INPUT),
    ("not_a_hub", 409, EXIT_BAD_INPUT),
    ("fleet_refused", 422, EXIT_BAD_INPUT),
    ("internal", 500, 1),
    ("storage_failure", 500, 1),
    ("not_durable", 500, 1),
    ("node_stopped", 503, 1),
    ("shutting_down", 503, 1),
    ("too_many_clients", 503, 1),
    ("disk_full", 507, 1),
];

/// The command-line exit code for an API error code (1 for an unknown one).
pub fn exit_code(code: &str) -> i32 {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(1, |(_, _, exit)| *exit)
}

impl ApiError {
    /// An error with `code`, whose status [`CODES`] gives.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        let status = CODES
            .iter()
            .find(|(c, _, _)| *c == code)
            .and_then(|(_, s, _)| StatusCode::from_u16(*s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401: no or a wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            "unauthorized",
            "missing or wrong bearer token (Authorization: Bearer <DIR/api.token>)",
        )
    }

    /// 500 for a failure that is not the caller's.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("internal", message)
    }

    /// The answer for a malformed value.
    pub fn input(e: &InputError) -> Self {
        Self::new("invalid_input", e.to_string())
    }

    /// The answer for an event the rule or the model refused.
    pub fn event(e: &EventError) -> Self {
        let code = match e {
            EventError::InsufficientRights { .. } | EventError::InsufficientAfterBorrow(_) => {
                "insufficient_rights"
            }
            EventError::RecordNotAllowed { .. } => "record_not_allowed",
            EventError::UnknownSku(_) => "unknown_sku",
            EventError::DuplicateEvent { .. } => "duplicate_event_id",
            EventError::Overflow => "overflow",
            EventError::SelfGrant => "self_grant",
            EventError::TransferToSameLocation { .. } => "transfer_to_same_location",
            EventError::ReservationExists(_) => "reservation_exists",
            EventError::UnknownReservation(_) => "unknown_reservation",
            EventError::ReservationPoolMismatch(_) => "reservation_pool_mismatch",
            EventError::ReservationExceeded { .. } => "reservation_exceeded",
            EventError::NotPermitted(_) => "not_permitted",
            EventError::Input(_) => "invalid_input",
            _ => "event_refused",
        };
        Self::new(code, e.to_string())
    }

    /// The answer for a failure of a running node.
    pub fn node(e: &NodeError) -> Self {
        match e {
            NodeError::Event(ev) => Self::event(ev),
            NodeError::Store(StoreError::DiskFull) => Self::new("disk_full", e.to_string()),
            NodeError::Store(_) => Self::new("storage_failure", e.to_string()),
            NodeError::Stopped => Self::new("node_stopped", e.to_string()),
            NodeError::OwnHistoryConflict { .. } => {
                Self::new("own_history_conflict", e.to_string())
            }
            NodeError::Recovering { .. } => Self::new("recovering_own_history", e.to_string()),
            NodeError::OwnHistoryInLaterEpoch { .. } => {
                Self::new("own_history_in_later_epoch", e.to_string())
            }
            NodeError::NotDurable => Self::new("not_durable", e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }

    /// The answer for a request the command line's event builder refused.
    pub fn build(e: &anyhow::Error) -> Self {
        if let Some(f) = e.downcast_ref::<FieldError>() {
            let code = match f {
                FieldError::UnknownKind(_) => "unknown_kind",
                FieldError::Missing(_) => "missing_field",
                FieldError::NotApplicable { .. } => "field_not_applicable",
            };
            return Self::new(code, f.to_string());
        }
        if let Some(i) = e.downcast_ref::<InputError>() {
            return Self::input(i);
        }
        if let Some(ev) = e.downcast_ref::<EventError>() {
            return Self::event(ev);
        }
        Self::internal(format!("{e:#}"))
    }

    /// The answer for a store failure outside a node (reading stock).
    pub fn store(e: &StoreError) -> Self {
        match e {
            StoreError::DiskFull => Self::new("disk_full", e.to_string()),
            _ => Self::new("storage_failure", e.to_string()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stocksync::model::{EventId, LocationId, PoolKey, Sku};

    fn pool() -> PoolKey {
        PoolKey::new(LocationId::new("S1").unwrap(), Sku::new("A").unwrap())
    }

    #[test]
    fn codes_are_unique_and_known() {
        for (i, (c, s, _)) in CODES.iter().enumerate() {
            assert!(StatusCode::from_u16(*s).is_ok());
            assert!(CODES[i + 1..].iter().all(|(o, _, _)| o != c), "{c} twice");
        }
    }

    #[test]
    fn api_exit_codes_match_the_direct_command_line() {
        let errors: Vec<NodeError> = vec![
            EventError::InsufficientRights {
                pool: pool(),
                available: 0,
                requested: 1,
            }
            .into(),
            EventError::UnknownSku(Sku::new("B").unwrap()).into(),
            EventError::DuplicateEvent {
                id: EventId::new("x").unwrap(),
            }
            .into(),
            EventError::RecordNotAllowed {
                kind: "online_order",
            }
            .into(),
            NodeError::Stopped,
            NodeError::NotDurable,
            StoreError::DiskFull.into(),
            StoreError::Failed("x".into()).into(),
        ];
        for e in errors {
            let api = ApiError::node(&e);
            let direct = crate::cli::exit_code(&anyhow::Error::from(e));
            assert_eq!(exit_code(api.code), direct, "{}", api.code);
            assert_ne!(api.code, "internal");
        }
        let build = [
            anyhow::Error::from(FieldError::Missing("id")),
            anyhow::Error::from(FieldError::UnknownKind("x".into())),
            anyhow::Error::from(InputError::ZeroQuantity),
        ];
        for e in build {
            let api = ApiError::build(&e);
            assert_eq!(exit_code(api.code), crate::cli::exit_code(&e));
            assert_eq!(api.status, StatusCode::UNPROCESSABLE_ENTITY);
        }
    }

    #[test]
    fn statuses_follow_the_kind_of_error() {
        let refused = ApiError::node(
            &EventError::InsufficientRights {
                pool: pool(),
                available: 0,
                requested: 1,
            }
            .into(),
        );
        assert_eq!(refused.status, StatusCode::CONFLICT);
        assert_eq!(ApiError::unauthorized().status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            ApiError::node(&StoreError::DiskFull.into()).status,
            StatusCode::INSUFFICIENT_STORAGE
        );
    }
}
