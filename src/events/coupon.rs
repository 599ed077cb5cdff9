//! Signup coupon consumer: issues one unique code per new user into `coupons` and mails it.
//! Idempotent: a re-run finds the user's coupon and sends only if it was not mailed yet.

use askama::Template;
use futures::future::BoxFuture;
use rand::Rng;
use sqlx::SqlitePool;

use crate::{
    events::{Consumer, ConsumerError, Deps, Envelope, JobInfo, UserRegistered},
    mail::Mailer,
    users::find_user,
};

pub const COUPON_QUEUE: &str = "signup_coupon";
const SUBJECT: &str = "Your signup coupon";

#[derive(Template)]
#[template(path = "email/coupon.txt")]
struct CouponText<'a> {
    greeting_name: &'a str,
    code: &'a str,
}

#[derive(Template)]
#[template(path = "email/coupon.html")]
struct CouponHtml<'a> {
    greeting_name: &'a str,
    code: &'a str,
}

pub struct SignupCoupon {
    pool: SqlitePool,
    mailer: Mailer,
}

impl SignupCoupon {
    pub fn new(deps: &Deps) -> Self {
        SignupCoupon {
            pool: deps.pool.clone(),
            mailer: deps.mailer.clone(),
        }
    }

    /// The user's coupon: issued now, or the one issued by an earlier run.
    async fn issue(&self, user_id: i64) -> Result<(String, bool), sqlx::Error> {
        for _ in 0..5 {
            let code = new_code();
            let inserted = sqlx::query("INSERT INTO coupons (user_id, code) VALUES (?1, ?2) ON CONFLICT (user_id) DO NOTHING")
                .bind(user_id)
                .bind(&code)
                .execute(&self.pool)
                .await;
            match inserted {
                // Another code taken by chance: draw again.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e),
                Ok(_) => break,
            }
        }
        sqlx::query_as("SELECT code, mailed_at IS NOT NULL FROM coupons WHERE user_id = ?1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await
    }
}

/// `WELCOME-` and 8 characters without look-alikes (no 0/O, 1/I).
fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let tail: String = (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("WELCOME-{tail}")
}

fn retry(e: impl std::error::Error + Send + Sync + 'static) -> ConsumerError {
    ConsumerError::Retry(Box::new(e))
}

impl Consumer for SignupCoupon {
    fn name(&self) -> &'static str {
        COUPON_QUEUE
    }

    fn handle<'a>(
        &'a self,
        event: &'a Envelope<UserRegistered>,
        _job: &'a JobInfo,
    ) -> BoxFuture<'a, Result<(), ConsumerError>> {
        Box::pin(async move {
            let user_id = event.payload.user_id;
            let user = find_user(&self.pool, user_id)
                .await
                .map_err(retry)?
                .ok_or_else(|| {
                    ConsumerError::Abort(format!("user {user_id} does not exist").into())
                })?;
            let (code, mailed) = self.issue(user_id).await.map_err(retry)?;
            if mailed {
                tracing::info!("coupon already issued and mailed; nothing sent");
                return Ok(());
            }
            let greeting_name = user.name.as_deref().unwrap_or(&user.email);
            let text = CouponText {
                greeting_name,
                code: &code,
            }
            .render()
            .map_err(retry)?;
            let html = CouponHtml {
                greeting_name,
                code: &code,
            }
            .render()
            .map_err(retry)?;
            let message_id = self.mailer.message_id("coupon", user_id);
            let message = self
                .mailer
                .compose(&user, SUBJECT, &message_id, text, html)
                .map_err(retry)?;
            self.mailer.send(message).await.map_err(retry)?;
            sqlx::query("UPDATE coupons SET mailed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE user_id = ?1")
                .bind(user_id)
                .execute(&self.pool)
                .await
                .map_err(retry)?;
            tracing::info!("signup coupon issued and mailed");
            Ok(())
        })
    }
}
