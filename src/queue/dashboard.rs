//! The job dashboard's API (apalis-board, served at `/api/v1` on the admin listener): one storage
//! view per consumer queue. It lives here because it must know which job storage is in use.

use apalis_board::axum::framework::{ApiBuilder, RegisterRoute};
use apalis_sqlite::{Config, SqliteStorage};
use axum::Router;
use sqlx::SqlitePool;

use crate::events::QueuedMessage;

pub fn board_api(pool: &SqlitePool, queues: &[&'static str]) -> Router {
    let mut board = ApiBuilder::new(Router::new());
    for queue in queues {
        let storage =
            SqliteStorage::<QueuedMessage>::new(pool).with_config(Config::default().queue(*queue));
        board = board.register(queue, storage);
    }
    board.build()
}
