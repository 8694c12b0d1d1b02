//! A bounded load for the failure tests: a few workers send a fixed number
//! of GETs between them and count those that fail (anything but a 200 with
//! its whole body), while the test breaks something.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::apps::Running;

#[derive(Debug)]
pub struct Load {
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    /// What the first failures were, for the assertion's message.
    failures: Arc<Mutex<Vec<String>>>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// `workers` tasks send `total` GETs to `target`, the n-th to `path_of(n)`.
    pub fn start(
        target: &Running,
        workers: usize,
        total: usize,
        path_of: impl Fn(usize) -> String + Send + Sync + 'static,
    ) -> Self {
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let path_of = Arc::new(path_of);
        let workers = (0..workers)
            .map(|_| {
                let (client, base) = (target.client().clone(), target.url(""));
                let (sent, failed, path_of) = (sent.clone(), failed.clone(), path_of.clone());
                let failures = failures.clone();
                tokio::spawn(async move {
                    loop {
                        let n = sent.fetch_add(1, Ordering::SeqCst);
                        if n >= total {
                            break;
                        }
                        let path = path_of(n);
                        let outcome = match client.get(format!("{base}{path}")).send().await {
                            Ok(response) => {
                                let status = response.status();
                                match response.bytes().await {
                                    Ok(_) if status == 200 => Ok(()),
                                    Ok(body) => Err(format!(
                                        "{status}: {}",
                                        String::from_utf8_lossy(&body[..body.len().min(300)])
                                    )),
                                    Err(error) => Err(format!("{status}, body cut: {error}")),
                                }
                            }
                            Err(error) => Err(error.to_string()),
                        };
                        if let Err(failure) = outcome {
                            failed.fetch_add(1, Ordering::SeqCst);
                            let mut failures = failures
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            if failures.len() < 5 {
                                failures.push(format!("{path}: {failure}"));
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            sent,
            failed,
            failures,
            workers,
        }
    }

    /// Waits until `count` requests have been sent.
    pub async fn until_sent(&self, count: usize) {
        while self.sent.load(Ordering::SeqCst) < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for every request; returns how many failed, and how the first did.
    pub async fn finish(self) -> (usize, Vec<String>) {
        for worker in self.workers {
            worker.await.expect("a load worker panicked");
        }
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        (self.failed.load(Ordering::SeqCst), failures)
    }
}
