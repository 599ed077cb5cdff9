//! One test body, both databases. A test written as `async fn name(db: TestDb)` followed by
//! `on_both_databases!(name);` runs twice: `name::sqlite` on a temporary SQLite file and
//! `name::postgres` on a fresh PostgreSQL database (dropped afterwards), which is skipped with one
//! line when `DATABASE_URL_PG` is unset. Plus the few job-table statements a test needs where
//! the two dialects differ (the job table is `Jobs` on SQLite, `apalis.jobs` on PostgreSQL).

use signup_queue::db::{Backend, Db};
use signup_queue_tools::testkit::{
    TestApp, TestAppBuilder,
    pg::{TempPgDatabase, pg_or_skip},
    temp_database,
};
use sqlx::AssertSqlSafe;

/// The database one test runs on; it is removed when this value is dropped (the temporary folder,
/// or `DROP DATABASE ... WITH (FORCE)`), so keep it until the app using it has stopped.
pub enum TestDb {
    Sqlite {
        url: String,
        _dir: tempfile::TempDir,
    },
    Postgres(TempPgDatabase),
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let (dir, url) = temp_database();
        TestDb::Sqlite { url, _dir: dir }
    }

    /// A fresh PostgreSQL database, or `None` after the one skip line naming `test`.
    pub async fn postgres_or_skip(test: &str) -> Option<TestDb> {
        pg_or_skip(test).await.map(TestDb::Postgres)
    }

    /// The `DATABASE_URL` of this database.
    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } => url,
            TestDb::Postgres(db) => db.url(),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            TestDb::Sqlite { .. } => Backend::Sqlite,
            TestDb::Postgres(_) => Backend::Postgres,
        }
    }
}

/// The app builder (`support::app()`) on `db`.
pub fn app_on(db: &TestDb) -> TestAppBuilder {
    super::app().database(db.url())
}

/// Generates, for `async fn $name(db: TestDb)` in the same module, the tests `$name::sqlite` and
/// `$name::postgres`. `multi_thread` after the name runs both on tokio's multi-threaded runtime
/// (two worker threads), as the crash and burst tests need.
macro_rules! on_both_databases {
    ($name:ident) => {
        $crate::support::db::on_both_databases!(@variants $name, #[tokio::test]);
    };
    ($name:ident, multi_thread) => {
        $crate::support::db::on_both_databases!(
            @variants $name, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        );
    };
    (@variants $name:ident, #[$test:meta]) => {
        mod $name {
            use $crate::support::db::TestDb;

            #[$test]
            async fn sqlite() {
                super::$name(TestDb::sqlite()).await;
            }

            #[$test]
            async fn postgres() {
                if let Some(db) = TestDb::postgres_or_skip(module_path!()).await {
                    super::$name(db).await;
                }
            }
        }
    };
}
pub(crate) use on_both_databases;

/// The job table's name on `pool`'s database, for the rare test statement that `inspect` and the
/// HTTP API do not cover (re-delivering a job, ageing it).
pub fn jobs_table(pool: &Db) -> &'static str {
    match pool.backend() {
        Backend::Sqlite => "Jobs",
        Backend::Postgres => "apalis.jobs",
    }
}

/// Runs one statement that both databases accept, with `{jobs}` standing for the job table and
/// `$1` bound to `arg` when given; returns the rows it changed.
pub async fn execute(app: &TestApp, sql: &str, arg: Option<&str>) -> u64 {
    let sql = sql.replace("{jobs}", jobs_table(&app.pool));
    signup_queue::with_db!(&app.pool, pool => {
        let mut query = sqlx::query(AssertSqlSafe(sql.clone()));
        if let Some(arg) = arg {
            query = query.bind(arg);
        }
        query
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    })
}

/// Puts finished jobs (all, or the one with id `job_id`) back in the queue, as a re-delivery
/// after a crash would: the consumers must notice the work was done and do nothing twice.
pub async fn redeliver(app: &TestApp, job_id: Option<&str>) {
    let which = if job_id.is_some() { "id = $1" } else { "TRUE" };
    let sql = format!(
        "UPDATE {{jobs}} SET status = 'Pending', lock_by = NULL, done_at = NULL WHERE {which}"
    );
    let changed = execute(app, &sql, job_id).await;
    assert!(changed > 0, "no job to re-deliver");
}

/// Makes every insert into `table` fail with `message` (a trigger), as an outage of what the
/// table stands for would; `table` may be `{jobs}`.
pub async fn refuse_inserts(app: &TestApp, table: &str, message: &str) {
    let table = table.replace("{jobs}", jobs_table(&app.pool));
    let statements = match app.pool.backend() {
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER refuse_inserts BEFORE INSERT ON {table} \
             BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )],
        Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION refuse_inserts() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION '{message}'; END $$"
            ),
            format!(
                "CREATE TRIGGER refuse_inserts BEFORE INSERT ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION refuse_inserts()"
            ),
        ],
    };
    for statement in statements {
        execute(app, &statement, None).await;
    }
}

/// A `SELECT COUNT(*) ...` that both databases accept, with `{jobs}` standing for the job table.
pub async fn count(app: &TestApp, sql: &str) -> i64 {
    let sql = sql.replace("{jobs}", jobs_table(&app.pool));
    signup_queue::with_db!(&app.pool, pool => {
        sqlx::query_scalar(AssertSqlSafe(sql.clone()))
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}
