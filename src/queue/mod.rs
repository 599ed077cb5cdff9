//! Everything that knows the job storage (apalis on SQLite): publishing an event's jobs inside
//! the caller's transaction, the workers that run them, the wake-up after a commit, the retry
//! schedule, the public job states and the queries operators and status panels read. No other
//! module names apalis or the `Jobs` table.

pub mod dashboard;
pub mod inspect;
pub mod publish;
pub mod retention;
pub mod retry;
pub mod state;
pub mod wakeup;
pub mod workers;

pub use publish::{Published, publish};
pub use retry::RetrySchedule;
pub use state::{Job, JobState, JobStatus, find_job};
pub use wakeup::Wakeup;
pub use workers::{PoolSettings, run_workers};
