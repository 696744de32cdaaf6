//! An API server outage at the TCP level: [`OutageGate`] sits in front of the fake (or any
//! address) on its own loopback port, forwards connections while up, and while down cuts every
//! open connection (watch streams included) and closes each new one as soon as it is accepted,
//! counting the attempts. It comes back on the same port, so clients keep their configuration,
//! as they would after a real API server restart or network partition. The fake itself keeps
//! its state and stays untouched: only the path to it breaks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A TCP forwarder to `target` that tests switch down and up again (see the module docs).
/// Listens on 127.0.0.1 only; dropping it stops the listener and every forwarded connection.
pub struct OutageGate {
    addr: SocketAddr,
    shared: Arc<GateState>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct GateState {
    down: AtomicBool,
    /// When each connection attempt made while down was accepted (and closed).
    refused: Mutex<Vec<Instant>>,
    forwarded: AtomicUsize,
    /// Forwarding tasks of the open connections, cut when the gate goes down.
    live: Mutex<Vec<AbortHandle>>,
}

impl OutageGate {
    /// Binds 127.0.0.1:0 and forwards every connection to `target` until [`go_down`](Self::go_down).
    #[allow(clippy::panic)] // a loopback bind failure is a broken test environment: fail loudly
    pub async fn start(target: SocketAddr) -> OutageGate {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("outage gate: cannot bind 127.0.0.1:0: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("outage gate: no local address: {e}"),
        };
        let shared = Arc::new(GateState::default());
        let accept = tokio::spawn(accept_loop(listener, target, shared.clone()));
        OutageGate { addr, shared, accept }
    }

    /// `http://127.0.0.1:<port>`: the URL clients use instead of the fake's own.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the outage: open connections are cut at once, new ones are closed as soon as they
    /// are accepted (the client sees the connection end before any response).
    pub fn go_down(&self) {
        // Under the lock the accept loop holds while deciding, so no connection slips through.
        let mut live = lock(&self.shared.live);
        self.shared.down.store(true, Ordering::SeqCst);
        for task in live.drain(..) {
            task.abort();
        }
    }

    /// Ends the outage: new connections are forwarded again (on the same port).
    pub fn come_back(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    /// How many connection attempts were refused while down.
    pub fn refused(&self) -> usize {
        lock(&self.shared.refused).len()
    }

    /// The most connection attempts refused within any one second: a client in a hot retry loop
    /// shows here even if its average is low.
    pub fn refused_peak_per_second(&self) -> usize {
        let times = lock(&self.shared.refused).clone();
        let mut peak = 0;
        let mut start = 0;
        for (end, at) in times.iter().enumerate() {
            while at.duration_since(times[start]) >= Duration::from_secs(1) {
                start += 1;
            }
            peak = peak.max(end + 1 - start);
        }
        peak
    }

    /// How many connections were forwarded while up.
    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for OutageGate {
    fn drop(&mut self) {
        self.accept.abort();
        for task in std::mem::take(&mut *lock(&self.shared.live)) {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<GateState>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off briefly rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut live = lock(&shared.live);
        if shared.down.load(Ordering::SeqCst) {
            lock(&shared.refused).push(Instant::now());
            drop(inbound);
            continue;
        }
        shared.forwarded.fetch_add(1, Ordering::SeqCst);
        let task = tokio::spawn(forward(inbound, target));
        live.retain(|t| !t.is_finished());
        live.push(task.abort_handle());
    }
}

async fn forward(mut inbound: TcpStream, target: SocketAddr) {
    if let Ok(mut outbound) = TcpStream::connect(target).await {
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    }
}
