//! The store thread: a loop around the one [`Executor`], so blocking work (fsync, long
//! reads) never stalls the event loop (docs/PROTOCOL.md §8.8). Requests come in on a
//! channel in the order issued; each event goes back on another, and the loop is woken
//! through `wake`.

use super::{Executor, Store, StoreEvent, StoreRequest};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

/// Handle of a running store thread. Dropping it closes the request channel and joins the
/// thread once it has carried out what was queued.
pub struct StoreThread {
    tx: Sender<StoreRequest>,
    rx: Receiver<StoreEvent>,
    handle: Option<JoinHandle<()>>,
}

impl StoreThread {
    /// Starts a thread serving `store`; `wake` is called after each event is sent.
    ///
    /// # Panics
    /// When the OS refuses to start a thread (at server start only).
    pub fn spawn(store: Box<dyn Store>, wake: Box<dyn Fn() + Send>) -> StoreThread {
        let (tx, req_rx) = mpsc::channel::<StoreRequest>();
        let (ev_tx, rx) = mpsc::channel::<StoreEvent>();
        let handle = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || serve(Executor::new(store), &req_rx, &ev_tx, wake.as_ref()))
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

/// The thread's loop: until the request channel closes or nobody listens for events.
fn serve(
    mut exec: Executor,
    requests: &Receiver<StoreRequest>,
    events: &Sender<StoreEvent>,
    wake: &dyn Fn(),
) {
    while let Ok(req) = requests.recv() {
        let Some(ev) = exec.execute(req) else {
            continue;
        };
        if events.send(ev).is_err() {
            break;
        }
        wake();
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
