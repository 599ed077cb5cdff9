//! Tools around signup-queue, kept out of the product's library so that `serve` carries none of
//! their dependencies:
//! - [`bench`]: `signup-queue bench`, what the queue buys measured against this machine's limits;
//! - [`soak`]: `signup-queue-soak`, the long run with a failing mail server and `kill -9`ed
//!   workers (RELIABILITY.md);
//! - [`smtp_sink`]: a measuring SMTP server (latency, session cap, counts, injected 451s and
//!   outages) for the bench, the soak and tests;
//! - [`amqp_consume`]: `signup-queue amqp consume`, another service's consumer of the events the
//!   app relays to RabbitMQ;
//! - [`redis_queue`]: `signup-queue redis`, the chapter's LPUSH/BRPOP exercise and its variants;
//! - [`testkit`]: the real application on port 0 with a temporary database, for tests and the bench.

pub mod amqp_consume;
pub mod bench;
pub mod redis_queue;
pub mod smtp_sink;
pub mod soak;
pub mod testkit;
