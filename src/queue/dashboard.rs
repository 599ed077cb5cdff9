//! The job dashboard's API (apalis-board, served at `/api/v1` on the admin listener): one storage
//! view per consumer queue. It lives here because it must know which job storage is in use.

use apalis_board::axum::framework::{ApiBuilder, RegisterRoute};
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use axum::Router;

use crate::{db::Db, events::QueuedMessage};

pub fn board_api(pool: &Db, queues: &[&'static str]) -> Router {
    let mut board = ApiBuilder::new(Router::new());
    for queue in queues {
        board = match pool {
            Db::Sqlite(pool) => board.register(
                queue,
                SqliteStorage::<QueuedMessage>::new(pool)
                    .with_config(apalis_sqlite::Config::default().queue(*queue)),
            ),
            Db::Postgres(pool) => board.register(
                queue,
                PostgresStorage::<QueuedMessage>::new(pool)
                    .with_config(apalis_postgres::Config::default().queue(*queue)),
            ),
        };
    }
    board.build()
}
