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
    #[allow(clippy::too_many_lines)] // issue 9: to be split into named steps
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
                        StoreRequest::Digest { tag } => digest(store.as_ref(), tag),
                        StoreRequest::Cursor { tag, peer } => match store.cursor(&peer) {
                            Ok(c) => StoreEvent::Cursor {
                                tag,
                                line: c.map_or(0, |(_, line)| line),
                            },
                            Err(e) => StoreEvent::StreamFailed {
                                stream: tag,
                                error: e.to_string(),
                            },
                        },
                        StoreRequest::JournalPage { tag, since, limit } => {
                            let mut lines = Vec::new();
                            match store.journal_since(since, limit, &mut lines) {
                                Ok(read) => StoreEvent::JournalPage {
                                    tag,
                                    entries: lines
                                        .into_iter()
                                        .map(|e| match e.change {
                                            super::Change::Contact(c) => (e.line, c),
                                        })
                                        .collect(),
                                    read,
                                },
                                Err(e) => StoreEvent::StreamFailed {
                                    stream: tag,
                                    error: e.to_string(),
                                },
                            }
                        }
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

/// Counts the contacts of one snapshot and hashes their canonical form: SHA-512 over the
/// 536-byte server-role Update bodies (`[clock u32][username 256][contact 256][phone 20]`)
/// in (username, contact) order.
fn digest(store: &dyn Store, tag: u64) -> StoreEvent {
    use sha2::{Digest, Sha512};
    let result = (|| -> Result<(u64, Vec<u8>), super::StoreError> {
        let mut snap = store.snapshot()?;
        let mut h = Sha512::new();
        let mut page = Vec::new();
        let mut rec = [0u8; crate::wire::tcp::SERVER_RECORD_LEN];
        let mut count = 0u64;
        loop {
            page.clear();
            let more = snap.next_page(4096, &mut page)?;
            for c in &page {
                let fields = crate::wire::tcp::ContactFields {
                    username: &c.username,
                    contact: &c.contact,
                    phone: &c.phone,
                };
                if crate::wire::tcp::emit_server_record(c.clock, &fields, &mut rec).is_ok() {
                    h.update(&rec[1..]);
                    count += 1;
                }
            }
            if !more {
                break;
            }
        }
        Ok((count, h.finalize().to_vec()))
    })();
    match result {
        Ok((count, sha512)) => StoreEvent::Digest { tag, count, sha512 },
        Err(e) => StoreEvent::StreamFailed {
            stream: tag,
            error: e.to_string(),
        },
    }
}
