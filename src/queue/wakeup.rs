//! Wakes this process's idle workers right after an enqueue commits, so they start within
//! milliseconds instead of waiting for the next poll. Jobs written by other processes are still
//! found by polling (`POLL_INTERVAL`).

use std::sync::{Arc, Mutex};

use futures::channel::mpsc;

#[derive(Clone, Default)]
pub struct Wakeup {
    subscribers: Arc<Mutex<Vec<mpsc::Sender<()>>>>,
}

impl Wakeup {
    /// A stream that yields once per wake-up (wake-ups that arrive while one is pending coalesce).
    pub fn subscribe(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.push(tx);
        }
        rx
    }

    pub fn notify(&self) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            // A full channel already has a wake-up pending; a disconnected one is a stopped worker.
            subscribers.retain_mut(|tx| match tx.try_send(()) {
                Ok(()) => true,
                Err(e) => e.is_full(),
            });
        }
    }
}
