//! Captures everything the operator logs (trace level for its own code) into one buffer the leak
//! scanner reads. One global subscriber per test binary: the controller's tasks run on many
//! threads, so a thread-local subscriber would miss lines.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per process).
pub fn init() {
    let buffer = BUFFER.get_or_init(|| Arc::new(Mutex::new(Vec::new()))).clone();
    let filter = tracing_subscriber::EnvFilter::new(
        "info,dsql_credential_operator=trace,kube_lease_manager=debug,kube_runtime=debug,aws_sdk_secretsmanager=debug,aws_smithy_runtime=debug",
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || BufferWriter(buffer.clone()))
        .try_init();
}

/// All log lines captured so far in this process.
pub fn captured() -> String {
    BUFFER
        .get()
        .map(|b| String::from_utf8_lossy(&b.lock().unwrap_or_else(|p| p.into_inner())).into_owned())
        .unwrap_or_default()
}

/// The last `n` captured log lines, for failure messages.
pub fn tail(n: usize) -> String {
    let all = captured();
    let lines: Vec<&str> = all.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
