//! Which database the scenarios run on (`--database-url` / `DATABASE_URL`), and each scenario's
//! own fresh one: a temporary SQLite file (the default), or a database created for the scenario
//! on the given PostgreSQL server and dropped after it. A bench never touches the database the
//! URL names: on PostgreSQL only the server is taken from it, on SQLite nothing.

use anyhow::Context;
use sqlx::migrate::MigrateDatabase;

use signup_queue::db::Backend;

/// The backend of a run; cheap to clone, every scenario gets one.
#[derive(Debug, Clone)]
pub enum Target {
    Sqlite,
    /// A server URL (`postgres://user@host:port/any`); its database name is replaced by each
    /// scenario's own.
    Postgres(String),
}

impl Target {
    /// `None` or a `sqlite:` URL: SQLite on temporary files; a `postgres://` URL: that server.
    pub fn from_url(url: Option<&str>) -> anyhow::Result<Target> {
        match url.filter(|u| !u.is_empty()) {
            None => Ok(Target::Sqlite),
            Some(url) => Ok(match Backend::of_url(url)? {
                Backend::Sqlite => Target::Sqlite,
                Backend::Postgres => Target::Postgres(url.to_owned()),
            }),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Target::Sqlite => Backend::Sqlite,
            Target::Postgres(_) => Backend::Postgres,
        }
    }

    /// A fresh, empty database for one scenario (the app's migrations run when it connects).
    pub async fn fresh(&self, scenario: &str) -> anyhow::Result<TempDb> {
        match self {
            Target::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix(&format!("signup-queue-bench-{scenario}-"))
                    .tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                Ok(TempDb {
                    url,
                    place: Place::Sqlite { _dir: dir },
                })
            }
            Target::Postgres(server) => {
                // Lower case: PostgreSQL folds unquoted names, and psql users type them unquoted.
                let name = format!(
                    "bench_{}_{}",
                    scenario.replace('-', "_"),
                    ulid::Ulid::generate().to_string().to_lowercase()
                );
                let url = with_database(server, &name)?;
                sqlx::Postgres::create_database(&url)
                    .await
                    .with_context(|| format!("cannot create the database {name} for the bench"))?;
                Ok(TempDb {
                    url,
                    place: Place::Postgres { dropped: false },
                })
            }
        }
    }
}

/// One scenario's database; [`TempDb::remove`] drops it (a PostgreSQL one is also dropped, from a
/// thread of its own, when a failing scenario lets it go without that).
pub struct TempDb {
    url: String,
    place: Place,
}

enum Place {
    /// The folder goes with the file (and SQLite's -wal and -shm beside it).
    Sqlite {
        _dir: tempfile::TempDir,
    },
    Postgres {
        dropped: bool,
    },
}

impl TempDb {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database, closing whatever connections are still open to it (`WITH (FORCE)`).
    pub async fn remove(mut self) -> anyhow::Result<()> {
        if let Place::Postgres { dropped } = &mut self.place {
            *dropped = true;
            sqlx::Postgres::force_drop_database(&self.url)
                .await
                .context("cannot drop the bench's database")?;
        }
        Ok(())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if let Place::Postgres { dropped: false } = self.place {
            let url = self.url.clone();
            // Drop cannot await: a short-lived runtime on another thread does it.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    let _ = rt.block_on(sqlx::Postgres::force_drop_database(&url));
                }
            })
            .join();
        }
    }
}

/// `url` with its database name replaced by `name` (user, host, port and query kept).
pub fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .context("a PostgreSQL URL has the form postgres://user@host:port/database")?;
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    Ok(format!("{scheme}://{authority}/{name}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/b",
            ),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:p@h/b?sslmode=disable",
            ),
            ("postgresql://h:5433", "postgresql://h:5433/b"),
            (
                "postgres://h?application_name=x",
                "postgres://h/b?application_name=x",
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(with_database(given, "b").unwrap(), expected, "{given}");
        }
    }

    #[test]
    fn no_url_or_a_sqlite_one_is_sqlite() {
        assert!(matches!(Target::from_url(None).unwrap(), Target::Sqlite));
        assert!(matches!(
            Target::from_url(Some("sqlite://data/x.db")).unwrap(),
            Target::Sqlite
        ));
        assert!(matches!(
            Target::from_url(Some("postgres://h/db")).unwrap(),
            Target::Postgres(_)
        ));
        assert!(Target::from_url(Some("mysql://h/db")).is_err());
    }
}
