//! AFTER-MERGE: replaced by the store's one request executor.

use crate::core::tcp::{StoreEvent, StoreRequest};
use crate::store::{Change, Snapshot, Store};
use std::collections::HashMap;

pub(crate) struct Exec {
    pub(crate) store: Box<dyn Store>,
    snaps: HashMap<u64, Box<dyn Snapshot>>,
}

impl Exec {
    pub(crate) fn new(store: Box<dyn Store>) -> Self {
        Exec {
            store,
            snaps: HashMap::new(),
        }
    }

    pub(crate) fn execute(&mut self, req: StoreRequest) -> Option<StoreEvent> {
        Some(match req {
            StoreRequest::Apply { seq, batch } => {
                let mut changed = Vec::new();
                match self.store.apply(&batch, &mut changed) {
                    Ok(()) => StoreEvent::Applied { seq, changed },
                    Err(e) => StoreEvent::Failed {
                        seq,
                        error: e.to_string(),
                    },
                }
            }
            StoreRequest::Barrier { tag } => StoreEvent::BarrierDone { tag },
            StoreRequest::Snapshot { stream } => match self.store.snapshot() {
                Ok(s) => {
                    let count = s.count();
                    self.snaps.insert(stream, s);
                    StoreEvent::SnapshotReady { stream, count }
                }
                Err(e) => StoreEvent::StreamFailed {
                    stream,
                    error: e.to_string(),
                },
            },
            StoreRequest::NextPage { stream, max } => {
                let s = self.snaps.get_mut(&stream)?;
                let mut page = Vec::new();
                match s.next_page(max, &mut page) {
                    Ok(more) => {
                        if !more {
                            self.snaps.remove(&stream);
                        }
                        StoreEvent::Page {
                            stream,
                            contacts: page,
                            more,
                        }
                    }
                    Err(e) => StoreEvent::StreamFailed {
                        stream,
                        error: e.to_string(),
                    },
                }
            }
            StoreRequest::Digest { tag } => {
                use sha2::{Digest, Sha512};
                let mut snap = self.store.snapshot().ok()?;
                let mut h = Sha512::new();
                let mut page = Vec::new();
                let mut rec = [0u8; crate::wire::tcp::SERVER_RECORD_LEN];
                let mut count = 0;
                loop {
                    page.clear();
                    let more = snap.next_page(4096, &mut page).ok()?;
                    for c in &page {
                        let f = crate::wire::tcp::ContactFields {
                            username: &c.username,
                            contact: &c.contact,
                            phone: &c.phone,
                        };
                        if crate::wire::tcp::emit_server_record(c.clock, &f, &mut rec).is_ok() {
                            h.update(&rec[1..]);
                            count += 1;
                        }
                    }
                    if !more {
                        break;
                    }
                }
                StoreEvent::Digest {
                    tag,
                    count,
                    sha512: h.finalize().to_vec(),
                }
            }
            StoreRequest::Cursor { tag, peer } => StoreEvent::Cursor {
                tag,
                line: self.store.cursor(&peer).ok()?.map_or(0, |(_, l)| l),
            },
            StoreRequest::JournalPage { tag, since, limit } => {
                let mut lines = Vec::new();
                let read = self.store.journal_since(since, limit, &mut lines).ok()?;
                StoreEvent::JournalPage {
                    tag,
                    entries: lines
                        .into_iter()
                        .map(|e| match e.change {
                            Change::Contact(c) => (e.line, c),
                        })
                        .collect(),
                    read,
                }
            }
            StoreRequest::CloseStream { stream } => {
                self.snaps.remove(&stream);
                return None;
            }
        })
    }
}
