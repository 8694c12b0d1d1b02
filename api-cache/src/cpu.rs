//! CPU-heavy work (compressing and decoding large bodies) off the async
//! workers, so that it never stalls the requests they serve, and at most one
//! job per core at a time, so that a burst of misses queues instead of
//! piling up threads and memory.

use std::sync::LazyLock;

use tokio::sync::Semaphore;

static SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    Semaphore::new(cores)
});

/// Runs `work` on the blocking pool once a slot is free; `None` if it panicked.
pub(crate) async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _slot = SLOTS.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}
