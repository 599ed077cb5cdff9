//! The registration request, parsed once at the edge: a `FromRequest` extractor that reads the
//! body within its size limit, tells JSON from a browser form by content type (axum's
//! `parse-body-based-on-content-type` pattern) and validates every field into a [`NewUser`], so a
//! handler reads extract -> call -> reply. A refused request is answered in its own format.

use std::time::Instant;

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, Request},
    http::{HeaderMap, header},
    response::Response,
};

use crate::{
    users::{DisplayName, Email, FieldError, NewUser, Password},
    web::{AppState, error::AppError, register::answer},
};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How the request came, and so how it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Form,
    FormAnsweredInJson,
}

/// A valid registration, how it came, and when the request started (for `Server-Timing`).
#[derive(Debug)]
pub struct Registration {
    pub format: Format,
    pub user: NewUser,
    /// `x-request-id` (set by the request id layer): carried into the jobs.
    pub request_id: Option<String>,
    pub started: Instant,
}

impl FromRequest<AppState> for Registration {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let parsed = match read_body(&parts.headers, body).await {
            Ok((format, bytes)) => parse_registration(format, &bytes)
                .map(|user| (format, user))
                .map_err(|e| (format, e)),
            Err(refused) => Err(refused),
        };
        match parsed {
            Ok((format, user)) => Ok(Registration {
                format,
                user,
                request_id: parts
                    .headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                started,
            }),
            Err((format, e)) => Err(answer(format, state, started, Err(e))),
        }
    }
}

/// The format a request is answered in, from its content type and `Accept`; `None`: neither
/// JSON nor a form.
fn format_of(headers: &HeaderMap) -> Option<Format> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())?;
    // A form client that asks for JSON only (scripts, tests) is answered in JSON.
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json") && !accept.contains("text/html"));
    match content_type {
        m if m.essence_str() == "application/x-www-form-urlencoded" && !wants_json => {
            Some(Format::Form)
        }
        m if m.essence_str() == "application/x-www-form-urlencoded" => {
            Some(Format::FormAnsweredInJson)
        }
        m if m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON) => Some(Format::Json),
        _ => None,
    }
}

/// Reads the body within the size limit and tells JSON from a browser form.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<(Format, Bytes), (Format, AppError)> {
    let Some(format) = format_of(headers) else {
        return Err((Format::Json, AppError::UnsupportedMediaType));
    };
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => Ok((format, bytes)),
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            let error = if too_large {
                AppError::TooLarge(MAX_BODY_BYTES)
            } else {
                AppError::Malformed(format!("cannot read the request body: {e}"))
            };
            Err((format, error))
        }
    }
}

/// The raw fields of a registration, before validation.
#[derive(Debug, Default)]
struct RawRegistration {
    email: Option<String>,
    password: Option<String>,
    name: Option<String>,
}

impl RawRegistration {
    fn set(&mut self, key: &str, value: String) -> Result<(), AppError> {
        let slot = match key {
            "email" => &mut self.email,
            "password" => &mut self.password,
            "name" => &mut self.name,
            other => return Err(AppError::UnknownField(other.to_owned())),
        };
        if slot.is_some() {
            return Err(AppError::Malformed(format!("field {key:?} is given twice")));
        }
        *slot = Some(value);
        Ok(())
    }
}

pub fn parse_registration(format: Format, body: &[u8]) -> Result<NewUser, AppError> {
    let raw = match format {
        Format::Json => parse_json(body)?,
        Format::Form | Format::FormAnsweredInJson => parse_form(body)?,
    };
    let required = |value: Option<String>, field: &'static str| {
        value.ok_or_else(|| {
            AppError::Invalid(FieldError {
                field,
                message: "is required".into(),
            })
        })
    };
    let email = Email::parse(&required(raw.email, "email")?).map_err(AppError::Invalid)?;
    let password =
        Password::parse(&required(raw.password, "password")?).map_err(AppError::Invalid)?;
    let name = match raw.name {
        Some(name) => DisplayName::parse(&name).map_err(AppError::Invalid)?,
        None => None,
    };
    Ok(NewUser {
        email,
        password,
        name,
    })
}

fn parse_json(body: &[u8]) -> Result<RawRegistration, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::Malformed("the request body is empty".into()));
    }
    // Read as a list of members: a JSON object parsed into a map keeps only the last of two
    // equal keys, and `{"password": "x", "password": "correct horse"}` must be refused, not
    // half-read.
    let Members(fields) = serde_json::from_slice(body).map_err(|e| {
        AppError::Malformed(if e.is_data() {
            "the body must be a JSON object".into()
        } else {
            format!("the body is not valid JSON: {e}")
        })
    })?;
    let mut raw = RawRegistration::default();
    for (key, value) in fields {
        match value {
            serde_json::Value::String(text) => raw.set(&key, text)?,
            serde_json::Value::Null if key == "name" => {}
            _ if matches!(key.as_str(), "email" | "password" | "name") => {
                let field = match key.as_str() {
                    "email" => "email",
                    "password" => "password",
                    _ => "name",
                };
                return Err(AppError::Invalid(FieldError {
                    field,
                    message: "must be a string".into(),
                }));
            }
            _ => return Err(AppError::UnknownField(key)),
        }
    }
    Ok(raw)
}

/// A JSON object's members in order, duplicates kept.
struct Members(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// `application/x-www-form-urlencoded`, strictly: invalid percent-encoding or UTF-8 is refused
/// rather than silently replaced.
fn parse_form(body: &[u8]) -> Result<RawRegistration, AppError> {
    let decode = |part: &[u8]| -> Result<String, AppError> {
        let plus_as_space: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&plus_as_space)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| AppError::Malformed("the form is not valid UTF-8".into()))
    };
    let mut raw = RawRegistration::default();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let mut halves = pair.splitn(2, |&b| b == b'=');
        let key = decode(halves.next().unwrap_or_default())?;
        let value = decode(halves.next().unwrap_or_default())?;
        // Browsers send an empty optional field; treat it as absent.
        if key == "name" && value.trim().is_empty() {
            continue;
        }
        raw.set(&key, value)?;
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_unknown_field_is_refused() {
        let err = parse_registration(
            Format::Json,
            br#"{"email":"a@b.co","password":"12345678","admin":true}"#,
        )
        .unwrap_err();
        assert!(matches!(err, AppError::UnknownField(f) if f == "admin"));
    }

    #[test]
    fn json_with_wrong_type_names_the_field() {
        let err =
            parse_registration(Format::Json, br#"{"email":42,"password":"12345678"}"#).unwrap_err();
        assert!(matches!(err, AppError::Invalid(f) if f.field == "email"));
    }

    #[test]
    fn json_with_a_field_twice_is_refused() {
        let err = parse_registration(
            Format::Json,
            br#"{"email":"d@example.com","password":"x","password":"correct horse"}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, AppError::Malformed(m) if m.contains("twice")),
            "{err:?}"
        );
    }

    #[test]
    fn form_is_decoded_strictly() {
        let user = parse_registration(
            Format::Form,
            b"email=ada%40example.com&password=correct+horse&name=",
        )
        .expect("valid form");
        assert_eq!(user.email.as_str(), "ada@example.com");
        assert!(user.name.is_none());
        assert!(parse_registration(Format::Form, b"email=%FF&password=12345678").is_err());
    }
}
