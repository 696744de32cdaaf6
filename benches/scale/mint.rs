//! Token minting: the operator's `TokenMinter` against boto3.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsql_credential_operator::clock::SystemClock;
use dsql_credential_operator::token::{TokenMinter, TokenRequest};

use crate::ENDPOINT;
use crate::support::env::TestEnv;
use crate::support::moto::{test_credentials, test_python};

// ---------------------------------------------------------------------------------------------
// Token minting.

pub(crate) fn mint_rust(env: &TestEnv, count: usize) -> impl std::future::Future<Output = f64> + use<> {
    let minter = TokenMinter::new(&env.operator_sdk, Arc::new(SystemClock));
    async move {
        let request = TokenRequest {
            hostname: ENDPOINT.into(),
            region: "us-east-1".into(),
            admin: true,
            lifetime: Duration::from_secs(3600),
            signing_role: None,
        };
        minter.mint(&request).await.expect("mint"); // warm-up
        let start = Instant::now();
        for _ in 0..count {
            let token = minter.mint(&request).await.expect("mint");
            std::hint::black_box(token.token.expose().len());
        }
        start.elapsed().as_secs_f64() * 1e6 / count as f64
    }
}

pub(crate) fn mint_boto3(count: usize) -> Result<f64, String> {
    let python = test_python().map_err(|e| e.to_string())?;
    let credentials = test_credentials();
    let script = r#"
import sys, time, boto3
client = boto3.client("dsql", region_name="us-east-1")
n = int(sys.argv[1])
client.generate_db_connect_admin_auth_token(Hostname=sys.argv[2], Region="us-east-1", ExpiresIn=3600)
start = time.perf_counter()
for _ in range(n):
    client.generate_db_connect_admin_auth_token(Hostname=sys.argv[2], Region="us-east-1", ExpiresIn=3600)
print((time.perf_counter() - start) * 1e6 / n)
"#;
    let output = Command::new(python)
        .args(["-c", script, &count.to_string(), ENDPOINT])
        .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse::<f64>()
        .map_err(|e| e.to_string())
}
