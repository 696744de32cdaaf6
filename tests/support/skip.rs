//! Skipping a test on the real API server, loudly: a test that needs what only the fake API
//! server offers (holds, outages, fault injection, its fake clock) says why in one line, and the
//! line is also appended to the file named by `DSQL_OPERATOR_E2E_SKIP_LOG`, so the run against
//! the real control plane (`scripts/test.sh`) can count and list what it did not run there.

use std::io::Write;

use super::apiserver::FakeApiServer;
use super::env::TestEnv;

/// Environment variable naming the file each skip is appended to.
pub const SKIP_LOG_ENV: &str = "DSQL_OPERATOR_E2E_SKIP_LOG";

/// Records that the current test is skipped on the real API server because of `reason`.
pub fn on_real_server(reason: &str) {
    let test = std::thread::current().name().unwrap_or("<unnamed test>").to_owned();
    let binary = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    // Cargo names test binaries `<target>-<hash>`.
    let binary = binary
        .rsplit_once('-')
        .map_or(binary.as_str(), |(name, _)| name)
        .to_owned();
    eprintln!("skipped on the real API server: {binary}::{test}: {reason}");
    if let Ok(path) = std::env::var(SKIP_LOG_ENV) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {SKIP_LOG_ENV}={path}: {e}"));
        writeln!(file, "{binary}::{test}: {reason}").unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
}

impl TestEnv {
    /// The fake API server; against a real one, records the skip with [`on_real_server`] and
    /// returns `None`, upon which the test returns.
    pub fn fake_or_skip(&self, reason: &str) -> Option<&FakeApiServer> {
        if self.fake.is_none() {
            on_real_server(reason);
        }
        self.fake.as_ref()
    }
}
