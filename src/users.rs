//! Users: the validated registration input (parsed once, at the edge), password hashing, storage.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version, password_hash::SaltString};
use validator::ValidateEmail;

use crate::{
    config::HashCost,
    db::{Db, DbConn},
};

/// Why a field was refused: the field's name and a message a visitor can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

pub const EMAIL_MAX_LEN: usize = 254;
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;
pub const NAME_MAX_CHARS: usize = 100;

/// A syntactically valid address, trimmed; compared case-insensitively through [`Email::key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, FieldError> {
        let email = raw.trim();
        if email.is_empty() {
            return Err(FieldError::new("email", "is required"));
        }
        if email.len() > EMAIL_MAX_LEN {
            return Err(FieldError::new(
                "email",
                format!("must be at most {EMAIL_MAX_LEN} characters"),
            ));
        }
        let invalid = || FieldError::new("email", "is not a valid email address");
        // Control characters (CR/LF above all) would let an address inject mail headers.
        if email.chars().any(char::is_control) || !email.validate_email() {
            return Err(invalid());
        }
        // One mailbox, one account: `ida@exämple.com` and `ida@xn--exmple-cua.com` are the same
        // address, so the domain is stored in its one ASCII form (IDNA, UTS #46: punycode,
        // lower case). The local part is the mailbox owner's business and stays as typed.
        let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
        let domain = idna::domain_to_ascii(domain).map_err(|_| invalid())?;
        let canonical = format!("{local}@{domain}");
        if canonical.len() > EMAIL_MAX_LEN || !canonical.validate_email() {
            return Err(invalid());
        }
        Ok(Email(canonical))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form duplicates are detected on.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A password of acceptable length. Never printed: `Debug` hides it.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    pub fn parse(raw: &str) -> Result<Password, FieldError> {
        let chars = raw.chars().count();
        if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&chars) {
            return Err(FieldError::new(
                "password",
                format!("must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"),
            ));
        }
        if raw.contains('\0') {
            return Err(FieldError::new(
                "password",
                "must not contain NUL characters",
            ));
        }
        Ok(Password(raw.to_owned()))
    }

    /// argon2id PHC string. CPU-heavy: call it off the async runtime (see [`hash_password`]).
    fn hash_blocking(&self, cost: HashCost) -> Result<String, argon2::password_hash::Error> {
        let params = match cost {
            // OWASP password storage cheat sheet: argon2id, m=19 MiB, t=2, p=1.
            HashCost::Production => Params::new(19 * 1024, 2, 1, None)?,
            HashCost::Test => Params::new(64, 1, 1, None)?,
        };
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(self.0.as_bytes(), &salt)
            .map(|hash| hash.to_string())
    }
}

/// Hashes on the blocking pool so a registration burst cannot stall the async workers.
pub async fn hash_password(password: Password, cost: HashCost) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || password.hash_blocking(cost))
        .await?
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
}

/// An optional display name: trimmed, at most 100 characters, one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Option<DisplayName>, FieldError> {
        let name = raw.trim();
        if name.is_empty() {
            return Ok(None);
        }
        if name.chars().count() > NAME_MAX_CHARS {
            return Err(FieldError::new(
                "name",
                format!("must be at most {NAME_MAX_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(FieldError::new(
                "name",
                "must not contain control characters (line breaks, NUL)",
            ));
        }
        Ok(Some(DisplayName(name.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A registration whose every field passed validation.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub password: Password,
    pub name: Option<DisplayName>,
}

/// A stored user, as the mail needs it (the hash is never loaded).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
}

/// The insert failed because the address is taken.
#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    #[error("email already registered")]
    Duplicate,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[tracing::instrument(skip_all)]
pub async fn insert_user(
    conn: DbConn<'_>,
    email: &Email,
    name: Option<&DisplayName>,
    password_hash: &str,
) -> Result<i64, InsertUserError> {
    let result: Result<i64, sqlx::Error> = crate::with_conn!(conn, conn => sqlx::query_scalar(
        "INSERT INTO users (email, email_key, name, password_hash) VALUES ($1, $2, $3, $4)
         RETURNING id",
    )
    .bind(email.as_str())
    .bind(email.key())
    .bind(name.map(DisplayName::as_str))
    .bind(password_hash)
    .fetch_one(&mut *conn)
    .await);
    match result {
        Ok(id) => Ok(id),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(InsertUserError::Duplicate),
        Err(e) => Err(e.into()),
    }
}

#[tracing::instrument(skip(pool))]
pub async fn find_user(pool: &Db, user_id: i64) -> Result<Option<User>, sqlx::Error> {
    crate::with_db!(pool, pool => sqlx::query_as("SELECT id, email, name FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_keyed_case_insensitively() {
        let email = Email::parse("  Ada@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "Ada@example.com");
        assert_eq!(email.key(), "ada@example.com");
    }

    #[test]
    fn an_international_domain_and_its_punycode_are_one_address() {
        let unicode = Email::parse("ida@exämple.com").expect("valid");
        let ascii = Email::parse("ida@xn--exmple-cua.com").expect("valid");
        assert_eq!(unicode.as_str(), "ida@xn--exmple-cua.com");
        assert_eq!(unicode.key(), ascii.key());
        assert_eq!(
            Email::parse("Ada@Example.COM").expect("valid").as_str(),
            "Ada@example.com"
        );
    }

    #[test]
    fn email_with_line_break_is_refused() {
        let err = Email::parse("ada@example.com\r\nBcc: x@example.com").unwrap_err();
        assert_eq!(err.field, "email");
    }

    #[test]
    fn password_length_is_counted_in_characters() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("ééééééé").is_err());
        assert!(Password::parse("éééééééé").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn password_debug_never_shows_the_secret() {
        let password = Password::parse("correct horse").expect("valid");
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn blank_name_is_no_name() {
        assert_eq!(DisplayName::parse("   "), Ok(None));
        assert!(DisplayName::parse("Ada\nBcc").is_err());
    }
}
