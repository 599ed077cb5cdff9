//! A switch to make chosen consumers fail, for the page's "decoupled" experiment (development
//! only: installed with the embedded inbox). [`Faulty`] wraps a consumer: while its queue is
//! switched to fail, each run fails with a retryable error instead of doing the work, so the job
//! goes `retrying` while the other consumers' jobs of the same event finish untouched.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use crate::{
    consumers::{Consumer, ConsumerError, JobInfo},
    events::{Envelope, UserRegistered},
};

/// Which consumer queues are switched to fail; shared by the wrappers and the control route.
#[derive(Clone, Default)]
pub struct FaultSwitch {
    failing: Arc<Mutex<BTreeSet<String>>>,
}

impl FaultSwitch {
    pub fn failing(&self) -> Vec<String> {
        self.failing
            .lock()
            .map(|f| f.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn set(&self, queue: &str, fail: bool) {
        if let Ok(mut failing) = self.failing.lock() {
            if fail {
                failing.insert(queue.to_owned());
            } else {
                failing.remove(queue);
            }
        }
    }

    fn is_failing(&self, queue: &str) -> bool {
        self.failing.lock().is_ok_and(|f| f.contains(queue))
    }

    /// `consumer`, failing while its queue is switched to fail.
    pub fn wrap(&self, consumer: Arc<dyn Consumer>) -> Arc<dyn Consumer> {
        Arc::new(Faulty {
            inner: consumer,
            switch: self.clone(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0} was switched to fail on the page (development only)")]
struct SwitchedToFail(&'static str);

struct Faulty {
    inner: Arc<dyn Consumer>,
    switch: FaultSwitch,
}

#[async_trait::async_trait]
impl Consumer for Faulty {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn handle(
        &self,
        event: &Envelope<UserRegistered>,
        job: &JobInfo,
    ) -> Result<(), ConsumerError> {
        if self.switch.is_failing(self.name()) {
            return Err(ConsumerError::retry(SwitchedToFail(self.name())));
        }
        self.inner.handle(event, job).await
    }
}
