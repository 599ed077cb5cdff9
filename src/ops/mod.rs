//! The operator side: the admin listener (job dashboard, `/metrics`, retry endpoint) and the
//! `jobs` command line. Both read and repair the queue through `queue::inspect`.

pub mod admin;
pub mod jobs_cli;
