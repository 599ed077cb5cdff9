//! The message contract, and nothing else: the envelope every message travels in, the
//! `user_registered` event (v1), its versioning rules, and the legacy welcome-job shape still
//! accepted. docs/messages.md is the reference; docs/schemas/ holds the JSON Schemas a test
//! checks these types against. Who reacts to an event lives in `consumers`; how it travels, in
//! `queue`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const USER_REGISTERED: &str = "user_registered";
/// The version this code writes and reads of `user_registered`.
pub const USER_REGISTERED_VERSION: u32 = 1;

/// Every message: what happened (`type`, `version`), when, a unique id, and the payload.
/// See docs/messages.md for the versioning rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<P> {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub occurred_at: DateTime<Utc>,
    pub payload: P,
}

/// `user_registered` v1: ids only; consumers load what they need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: i64,
}

impl Envelope<UserRegistered> {
    pub fn user_registered(user_id: i64) -> Self {
        Envelope {
            id: ulid::Ulid::generate().to_string(),
            kind: USER_REGISTERED.into(),
            version: USER_REGISTERED_VERSION,
            occurred_at: Utc::now(),
            payload: UserRegistered { user_id },
        }
    }
}

/// The welcome job's message from before events, `{"task": "send_welcome_email", "user_id": 123}`;
/// still accepted on the welcome queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename = "send_welcome_email")]
pub struct SendWelcomeEmail {
    pub user_id: i64,
}

/// What a consumer queue may hold: an envelope, or the job message of the welcome queue from
/// before events (`{"task": "send_welcome_email", "user_id": N}`), still accepted so that jobs
/// already queued, or pushed by scripts, keep working.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueuedMessage {
    Envelope(Envelope<serde_json::Value>),
    Legacy(SendWelcomeEmail),
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("unsupported event type {0:?} (this consumer reads {USER_REGISTERED:?})")]
    UnsupportedType(String),
    #[error(
        "unsupported version {version} of {kind:?}: this code reads version {USER_REGISTERED_VERSION}; deploy a consumer that knows it"
    )]
    UnsupportedVersion { kind: String, version: u32 },
    #[error("payload does not match {USER_REGISTERED:?} v{USER_REGISTERED_VERSION}: {0}")]
    BadPayload(serde_json::Error),
}

impl QueuedMessage {
    /// Checks type and version; never panics on what it finds in the queue.
    pub fn into_user_registered(self) -> Result<Envelope<UserRegistered>, EventError> {
        match self {
            QueuedMessage::Legacy(job) => Ok(Envelope {
                id: format!("legacy-welcome-{}", job.user_id),
                kind: USER_REGISTERED.into(),
                version: USER_REGISTERED_VERSION,
                occurred_at: Utc::now(),
                payload: UserRegistered {
                    user_id: job.user_id,
                },
            }),
            QueuedMessage::Envelope(envelope) => {
                if envelope.kind != USER_REGISTERED {
                    return Err(EventError::UnsupportedType(envelope.kind));
                }
                if envelope.version != USER_REGISTERED_VERSION {
                    return Err(EventError::UnsupportedVersion {
                        kind: envelope.kind,
                        version: envelope.version,
                    });
                }
                let payload =
                    serde_json::from_value(envelope.payload).map_err(EventError::BadPayload)?;
                Ok(Envelope {
                    id: envelope.id,
                    kind: envelope.kind,
                    version: envelope.version,
                    occurred_at: envelope.occurred_at,
                    payload,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_version_is_refused_with_a_clear_error() {
        let raw = serde_json::json!({"id": "x", "type": "user_registered", "version": 2,
            "occurred_at": "2026-11-25T00:00:00Z", "payload": {"user_id": 1}});
        let message: QueuedMessage = serde_json::from_value(raw).expect("parses as a message");
        let error = message.into_user_registered().expect_err("refused");
        assert!(
            error.to_string().contains("unsupported version 2"),
            "{error}"
        );
    }

    #[test]
    fn the_legacy_welcome_job_is_still_understood() {
        let raw = serde_json::json!({"task": "send_welcome_email", "user_id": 7});
        let message: QueuedMessage = serde_json::from_value(raw).expect("parses");
        assert_eq!(
            message
                .into_user_registered()
                .expect("accepted")
                .payload
                .user_id,
            7
        );
    }

    #[test]
    fn legacy_message_has_the_documented_shape() {
        let json = serde_json::to_value(SendWelcomeEmail { user_id: 123 }).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"task": "send_welcome_email", "user_id": 123})
        );
    }

    #[test]
    fn the_envelope_has_the_documented_fields() {
        let json = serde_json::to_value(Envelope::user_registered(5)).expect("serializes");
        for field in ["id", "type", "version", "occurred_at", "payload"] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert_eq!(json["payload"]["user_id"], 5);
    }
}
