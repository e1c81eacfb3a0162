//! The store thread: owns the [`Store`] and carries out the TCP core's requests in the
//! order issued, so blocking work (fsync, long reads) never stalls the event loop. Each
//! answer is sent back on a channel and the loop is woken through `wake`.

use super::{Snapshot, Store};
use crate::core::tcp::{StoreEvent, StoreRequest};
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

/// Handle of a running store thread. Dropping the sender side ends the thread.
pub struct StoreThread {
    tx: Sender<StoreRequest>,
    rx: Receiver<StoreEvent>,
    handle: Option<JoinHandle<()>>,
}

impl StoreThread {
    /// Starts a thread serving `store`; `wake` is called after each event is sent.
    pub fn spawn(mut store: Box<dyn Store>, wake: Box<dyn Fn() + Send>) -> StoreThread {
        let (tx, req_rx) = mpsc::channel::<StoreRequest>();
        let (ev_tx, rx) = mpsc::channel::<StoreEvent>();
        let handle = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                let mut snaps: HashMap<u64, Box<dyn Snapshot>> = HashMap::new();
                let mut changed = Vec::new();
                let mut page = Vec::new();
                while let Ok(req) = req_rx.recv() {
                    let ev = match req {
                        StoreRequest::Apply { seq, batch } => {
                            changed.clear();
                            match store.apply(&batch, &mut changed) {
                                Ok(()) => StoreEvent::Applied {
                                    seq,
                                    changed: changed.clone(),
                                },
                                Err(e) => StoreEvent::Failed {
                                    seq,
                                    error: e.to_string(),
                                },
                            }
                        }
                        StoreRequest::Barrier { tag } => StoreEvent::BarrierDone { tag },
                        StoreRequest::Snapshot { stream } => match store.snapshot() {
                            Ok(s) => {
                                let count = s.count();
                                snaps.insert(stream, s);
                                StoreEvent::SnapshotReady { stream, count }
                            }
                            Err(e) => StoreEvent::StreamFailed {
                                stream,
                                error: e.to_string(),
                            },
                        },
                        StoreRequest::NextPage { stream, max } => match snaps.get_mut(&stream) {
                            None => continue,
                            Some(s) => {
                                page.clear();
                                match s.next_page(max, &mut page) {
                                    Ok(more) => {
                                        if !more {
                                            snaps.remove(&stream);
                                        }
                                        StoreEvent::Page {
                                            stream,
                                            contacts: std::mem::take(&mut page),
                                            more,
                                        }
                                    }
                                    Err(e) => {
                                        snaps.remove(&stream);
                                        StoreEvent::StreamFailed {
                                            stream,
                                            error: e.to_string(),
                                        }
                                    }
                                }
                            }
                        },
                        StoreRequest::CloseStream { stream } => {
                            snaps.remove(&stream);
                            continue;
                        }
                    };
                    if ev_tx.send(ev).is_err() {
                        break;
                    }
                    wake();
                }
            })
            .expect("spawning the store thread");
        StoreThread {
            tx,
            rx,
            handle: Some(handle),
        }
    }

    /// Queues a request (in order).
    pub fn send(&self, req: StoreRequest) {
        let _ = self.tx.send(req);
    }

    /// The next event, if one is ready.
    pub fn try_recv(&self) -> Option<StoreEvent> {
        self.rx.try_recv().ok()
    }

    /// Waits for the next event (for tests and shutdown).
    pub fn recv(&self) -> Option<StoreEvent> {
        self.rx.recv().ok()
    }
}

impl Drop for StoreThread {
    fn drop(&mut self) {
        let (dead, _) = mpsc::channel();
        self.tx = dead; // closes the request channel: the thread ends after its queue
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
