//! The real Kubernetes control plane (`tests/control-plane` at the repository root: etcd,
//! kube-apiserver and kube-controller-manager v1.36.2 on loopback), started fresh for one test
//! when `DSQL_OPERATOR_CONTROL_PLANE` names its binary, so golden recordings are replayed against
//! the server they were recorded from as well as against the fake. [`super::raw_as`] talks TLS to
//! it, as its admin when given no token.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Environment variable naming the control plane binary (scripts/test.sh builds and sets it).
pub const CONTROL_PLANE_ENV: &str = "DSQL_OPERATOR_CONTROL_PLANE";

/// How a raw request reaches a real server: its TLS roots and its admin's bearer token.
#[derive(Clone)]
pub struct RealServerAccess {
    /// TLS client configuration trusting the control plane's CA.
    pub tls: Arc<rustls::ClientConfig>,
    /// The admin token from its kubeconfig.
    pub admin_token: String,
}

/// Access to every real server started by this test binary, by base URL.
fn registry() -> &'static Mutex<HashMap<String, RealServerAccess>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, RealServerAccess>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The access for a base URL of a running control plane, if it is one.
pub fn access(base: &str) -> Option<RealServerAccess> {
    registry().lock().unwrap_or_else(|p| p.into_inner()).get(base).cloned()
}

/// A running control plane; dropping it stops it (SIGTERM, then waits) and removes its state.
pub struct ControlPlane {
    child: Child,
    dir: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub base: String,
}

impl ControlPlane {
    /// Whether this run replays against the real control plane too.
    pub fn configured() -> bool {
        std::env::var_os(CONTROL_PLANE_ENV).is_some_and(|v| !v.is_empty())
    }

    /// Starts a fresh control plane (bounded: 4 minutes until ready).
    pub fn start() -> ControlPlane {
        let binary = std::env::var(CONTROL_PLANE_ENV).unwrap_or_else(|_| panic!("{CONTROL_PLANE_ENV} is not set"));
        let dir = std::env::temp_dir().join(format!(
            "golden-control-plane-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut child = Command::new(&binary)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(240)).unwrap_or_else(|_| {
            panic!(
                "the control plane was not ready within 240 s (logs in {})",
                dir.display()
            )
        });
        let kubeconfig = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("the control plane did not start: {line:?} (logs in {})", dir.display()))
            .to_owned();
        let (base, ca_pem, admin_token) = read_kubeconfig(&kubeconfig);
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            roots.add(cert.expect("a PEM certificate")).expect("a CA certificate");
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        registry().lock().unwrap_or_else(|p| p.into_inner()).insert(
            base.clone(),
            RealServerAccess {
                tls: Arc::new(tls),
                admin_token,
            },
        );
        ControlPlane { child, dir, base }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        registry().lock().unwrap_or_else(|p| p.into_inner()).remove(&self.base);
        // SIGTERM: the control plane stops its components and etcd, then exits.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..300 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Server URL, CA (PEM) and token of the admin kubeconfig the control plane writes.
fn read_kubeconfig(path: &str) -> (String, Vec<u8>, String) {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{path} has no {name}"))
    };
    let ca = base64::engine::general_purpose::STANDARD
        .decode(field("certificate-authority-data:"))
        .expect("base64 CA");
    (field("server:"), ca, field("token:"))
}
