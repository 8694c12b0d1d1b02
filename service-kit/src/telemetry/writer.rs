//! Log lines reach stdout from one thread of their own: a worker that logs
//! only hands its bytes over, so a slow stdout (a full pipe, a slow disk)
//! never blocks a request. The queue is bounded; when it is full, lines are
//! dropped and counted rather than held without bound.

use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use tracing_subscriber::fmt::MakeWriter;

enum Message {
    Lines(Vec<u8>),
    Shutdown,
}

/// Where log lines are handed over. Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct LineWriter {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

/// Writes what is still queued, then stops the writer thread, when dropped.
#[derive(Debug)]
pub(super) struct WriterThread {
    queue: SyncSender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

/// A writer to `out`, with room for `capacity` hand-overs in its queue.
pub(super) fn spawn(
    out: impl Write + Send + 'static,
    capacity: usize,
) -> io::Result<(LineWriter, WriterThread)> {
    let (queue, handed) = mpsc::sync_channel(capacity);
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_until_shutdown(handed, BufWriter::with_capacity(64 * 1024, out)))?;
    let writer = LineWriter {
        queue: queue.clone(),
        dropped: Arc::default(),
    };
    Ok((
        writer,
        WriterThread {
            queue,
            thread: Some(thread),
        },
    ))
}

fn write_until_shutdown(handed: Receiver<Message>, mut out: BufWriter<impl Write>) {
    // Errors writing logs have nowhere to be reported: the lines are lost.
    while let Ok(message) = handed.recv() {
        let mut next = Some(message);
        // Everything queued goes out in one flush.
        while let Some(message) = next {
            match message {
                Message::Lines(bytes) => drop(out.write_all(&bytes)),
                Message::Shutdown => {
                    let _ = out.flush();
                    return;
                }
            }
            next = handed.try_recv().ok();
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

impl LineWriter {
    /// Hands `bytes` (whole lines) over, or drops them if the queue is full.
    pub(super) fn hand_over(&self, bytes: Vec<u8>) {
        match self.queue.try_send(Message::Lines(bytes)) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hand-overs dropped so far.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.hand_over(bytes.to_vec());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        let _ = self.queue.send(Message::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_handed_over_is_written_by_shutdown() {
        let out = Shared::default();
        let (writer, thread) = spawn(out.clone(), 1024).unwrap();
        for i in 0..500 {
            writer.hand_over(format!("line {i}\n").into_bytes());
        }
        drop(thread);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 500);
        assert!(text.ends_with("line 499\n"));
        assert_eq!(writer.dropped(), 0);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        /// A stdout that does not take anything until released.
        struct Stuck(Arc<Mutex<()>>);
        impl Write for Stuck {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                drop(self.0.lock().unwrap());
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                drop(self.0.lock().unwrap());
                Ok(())
            }
        }
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let (writer, thread) = spawn(Stuck(gate.clone()), 4).unwrap();
        for _ in 0..100 {
            writer.hand_over(vec![b'x'; 100 * 1024]);
        }
        assert!(writer.dropped() > 0);
        drop(held);
        drop(thread);
    }
}
