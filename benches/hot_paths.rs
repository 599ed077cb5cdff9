//! Micro-benchmarks of the hot pieces: request parsing + validation, the enqueue transaction,
//! mail rendering. `cargo bench`; the whole-system numbers come from `signup-queue bench`.

use criterion::{Criterion, criterion_group, criterion_main};
use signup_queue::{
    consumers::{self, Deps},
    events::Envelope,
    mail::Mailer,
    queue,
    users::{Email, User, insert_user},
    web::extract::{Format, parse_registration},
};

fn parsing(c: &mut Criterion) {
    let json =
        br#"{"email":"ada@example.com","password":"correct horse battery","name":"Ada Lovelace"}"#;
    let form = b"email=ada%40example.com&password=correct+horse+battery&name=Ada+Lovelace";
    c.bench_function("parse+validate JSON registration", |b| {
        b.iter(|| parse_registration(Format::Json, json))
    });
    c.bench_function("parse+validate form registration", |b| {
        b.iter(|| parse_registration(Format::Form, form))
    });
}

fn mailer() -> Mailer {
    Mailer::new(
        "smtp://127.0.0.1:2525",
        "Signup Queue <welcome@signup-queue.local>",
        std::time::Duration::from_secs(1),
        1,
    )
    .expect("mailer")
}

fn rendering(c: &mut Criterion) {
    let mailer = mailer();
    let user = User {
        id: 42,
        email: "ada@example.com".into(),
        name: Some("Ada Lovelace".into()),
    };
    c.bench_function("render welcome mail (text + HTML)", |b| {
        b.iter(|| consumers::welcome::render_welcome(&mailer, &user, "<welcome-42@x>", false))
    });
}

fn enqueue(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let pool = runtime
        .block_on(signup_queue::db::connect_and_migrate(&url))
        .expect("database");
    let queues: Vec<&'static str> = consumers::built_in(&Deps {
        pool: pool.clone(),
        mailer: mailer(),
    })
    .iter()
    .map(|consumer| consumer.name())
    .collect();
    let counter = std::sync::atomic::AtomicU64::new(0);
    c.bench_function("user + user_registered jobs in one transaction", |b| {
        b.to_async(&runtime).iter(|| async {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let email = Email::parse(&format!("u{n}@bench.local")).expect("email");
            let mut tx = pool.begin().await.expect("begin");
            let user_id = insert_user(tx.conn(), &email, None, "$argon2id$bench")
                .await
                .expect("insert");
            queue::publish(
                tx.conn(),
                &Envelope::user_registered(user_id),
                &user_id.to_string(),
                &queues,
                10,
                None,
            )
            .await
            .expect("publish");
            tx.commit().await.expect("commit");
        })
    });
}

criterion_group!(benches, parsing, rendering, enqueue);
criterion_main!(benches);
