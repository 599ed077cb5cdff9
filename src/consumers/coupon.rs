//! Signup coupon consumer: issues one unique code per new user into `coupons` and mails it.
//! Idempotent: a re-run finds the user's coupon and sends only if it was not mailed yet.

use std::sync::Arc;

use askama::Template;
use rand::Rng;

use crate::{
    consumers::{Consumer, ConsumerError, Deps, JobInfo},
    db::Db,
    db::batch::BatchWriter,
    events::{Envelope, UserRegistered},
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
    /// Issued inside the registration request (synchronous) rather than by a worker.
    inline: bool,
}

#[derive(Template)]
#[template(path = "email/coupon.html")]
struct CouponHtml<'a> {
    greeting_name: &'a str,
    code: &'a str,
    /// Issued inside the registration request (synchronous) rather than by a worker.
    inline: bool,
}

pub struct SignupCoupon {
    pool: Db,
    mailer: Mailer,
    /// "Mailed" marks, batched with other jobs' (see `db::batch`).
    mailed: BatchWriter<i64>,
}

impl SignupCoupon {
    pub fn new(deps: &Deps) -> Self {
        SignupCoupon {
            pool: deps.pool.clone(),
            mailer: deps.mailer.clone(),
            mailed: BatchWriter::new(
                deps.pool.clone(),
                Arc::new(|pool, user_ids| Box::pin(mark_mailed(pool, user_ids))),
            ),
        }
    }

    /// The user's coupon and whether it was mailed: issued now, or the one an earlier run issued
    /// (the no-op update makes `RETURNING` give back the existing row).
    async fn issue(&self, user_id: i64) -> Result<(String, bool), sqlx::Error> {
        let mut attempts = 0;
        loop {
            let issued = crate::with_db!(&self.pool, pool => sqlx::query_as(
                "INSERT INTO coupons (user_id, code) VALUES ($1, $2)
                 ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id
                 RETURNING code, mailed_at IS NOT NULL",
            )
            .bind(user_id)
            .bind(new_code())
            .fetch_one(pool)
            .await);
            match issued {
                // Another user's code drawn by chance: draw again.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() && attempts < 5 => {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }
}

async fn mark_mailed(db: Db, user_ids: Arc<[i64]>) -> Result<(), sqlx::Error> {
    let now = db.backend().now();
    crate::with_db!(&db, pool => {
        let mut query = sqlx::QueryBuilder::new(format!(
            "UPDATE coupons SET mailed_at = {now} WHERE user_id IN ("
        ));
        let mut ids = query.separated(", ");
        for id in user_ids.iter() {
            ids.push_bind(*id);
        }
        query.push(")");
        query.build().execute(pool).await?;
    });
    Ok(())
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

#[async_trait::async_trait]
impl Consumer for SignupCoupon {
    fn name(&self) -> &'static str {
        COUPON_QUEUE
    }

    async fn handle(
        &self,
        event: &Envelope<UserRegistered>,
        job: &JobInfo,
    ) -> Result<(), ConsumerError> {
        let user_id = event.payload.user_id;
        let user = find_user(&self.pool, user_id)
            .await
            .map_err(ConsumerError::retry)?
            .ok_or_else(|| ConsumerError::abort(format!("user {user_id} does not exist")))?;
        let (code, mailed) = self.issue(user_id).await.map_err(ConsumerError::retry)?;
        if mailed {
            tracing::info!("coupon already issued and mailed; nothing sent");
            return Ok(());
        }
        let greeting_name = user.name.as_deref().unwrap_or(&user.email);
        let text = CouponText {
            greeting_name,
            code: &code,
            inline: job.inline,
        }
        .render()
        .map_err(ConsumerError::retry)?;
        let html = CouponHtml {
            greeting_name,
            code: &code,
            inline: job.inline,
        }
        .render()
        .map_err(ConsumerError::retry)?;
        let message_id = self.mailer.message_id("coupon", user_id);
        let message = self
            .mailer
            .compose(&user, SUBJECT, &message_id, text, html)
            .map_err(ConsumerError::retry)?;
        self.mailer
            .send(message)
            .await
            .map_err(ConsumerError::retry)?;
        self.mailed
            .write(user_id)
            .await
            .map_err(ConsumerError::retry)?;
        tracing::info!("signup coupon issued and mailed");
        Ok(())
    }
}
