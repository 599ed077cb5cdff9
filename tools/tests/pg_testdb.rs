//! The test kit's temporary PostgreSQL databases: two of them are distinct real databases, and
//! dropping them (inside the test's runtime, as a test does) removes them from the server.
//! Needs `DATABASE_URL_PG`, e.g. `postgres://postgres@127.0.0.1:5432/postgres`; skipped without it.

use signup_queue_tools::testkit::{
    pg::{DATABASE_URL_PG, TempPgDatabase, pg_or_skip},
    unused_port,
};
use sqlx::{Connection as _, PgConnection};

#[tokio::test]
async fn each_test_database_is_fresh_and_gone_once_dropped() {
    let Some(first) = pg_or_skip("the test kit's temporary-database test").await else {
        return;
    };
    let second = pg_or_skip("the test kit's temporary-database test")
        .await
        .expect("the variable was set a moment ago");
    assert_ne!(first.name(), second.name());
    assert_ne!(first.url(), second.url());

    let admin_url = std::env::var(DATABASE_URL_PG).expect("set");
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("admin connection");
    let names = [first.name().to_owned(), second.name().to_owned()];
    assert_eq!(existing(&mut admin, &names).await, names.len());

    // The URL leads into the new database itself; a connection left open there does not keep
    // it from being dropped.
    let mut inside = PgConnection::connect(first.url()).await.expect("connects");
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut inside)
        .await
        .expect("query");
    assert_eq!(current, first.name());

    drop(first);
    drop(second);

    assert_eq!(existing(&mut admin, &names).await, 0);
}

#[tokio::test]
async fn a_server_that_is_not_there_is_an_error_naming_it() {
    let port = unused_port();
    let error = TempPgDatabase::create(&format!(
        "postgres://postgres:secret@127.0.0.1:{port}/postgres"
    ))
    .await
    .expect_err("nothing listens there");
    let message = format!("{error:#}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains("secret"), "{message}");
}

/// How many of `names` are databases on the server.
async fn existing(admin: &mut PgConnection, names: &[String]) -> usize {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = ANY($1)")
        .bind(names)
        .fetch_one(admin)
        .await
        .expect("pg_database query");
    usize::try_from(count).expect("a count")
}
