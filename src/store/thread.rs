//! The store thread: a loop around the one [`Executor`], so blocking work (fsync, long
//! reads) never stalls the event loop (docs/PROTOCOL.md §8.8). Requests come in on a
//! channel in the order issued; each event goes back on another, and the loop is woken
//! through `wake`. Each request's run time can be reported to an [`Observe`] (the store
//! latency histogram of `serve --metrics`, docs/METRICS.md).

use super::{Executor, Store, StoreEvent, StoreRequest};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Told, on the store thread, the kind of each request carried out
/// ([`StoreRequest::kind`]) and how long the store took over it.
pub type Observe = Box<dyn Fn(&'static str, Duration) + Send>;

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
        Self::spawn_observed(store, wake, None)
    }

    /// As [`Self::spawn`], and each request's run time goes to `observe`.
    ///
    /// # Panics
    /// When the OS refuses to start a thread (at server start only).
    pub fn spawn_observed(
        store: Box<dyn Store>,
        wake: Box<dyn Fn() + Send>,
        observe: Option<Observe>,
    ) -> StoreThread {
        let (tx, req_rx) = mpsc::channel::<StoreRequest>();
        let (ev_tx, rx) = mpsc::channel::<StoreEvent>();
        let handle = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                let ends = Ends {
                    requests: &req_rx,
                    events: &ev_tx,
                    wake: wake.as_ref(),
                    observe: observe.as_deref(),
                };
                serve(Executor::new(store), &ends);
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

/// What the thread's loop talks to: requests in, events out, the loop's wake-up and the
/// optional timing observer.
struct Ends<'a> {
    requests: &'a Receiver<StoreRequest>,
    events: &'a Sender<StoreEvent>,
    wake: &'a dyn Fn(),
    observe: Option<&'a (dyn Fn(&'static str, Duration) + Send)>,
}

/// The thread's loop: until the request channel closes or nobody listens for events.
fn serve(mut exec: Executor, ends: &Ends<'_>) {
    while let Ok(req) = ends.requests.recv() {
        let kind = req.kind();
        let started = Instant::now();
        let ev = exec.execute(req);
        if let Some(observe) = ends.observe {
            observe(kind, started.elapsed());
        }
        let Some(ev) = ev else {
            continue;
        };
        if ends.events.send(ev).is_err() {
            break;
        }
        (ends.wake)();
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
