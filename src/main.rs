//! Command line of dsql-credential-operator: `run` the controller, `check` a setup, or print
//! the `crd`.

use std::process::ExitCode;
use std::sync::Arc;

use std::net::SocketAddr;

use clap::{ArgAction, Parser, Subcommand};
use dsql_credential_operator::aws::{SecretsManager, WriteRateLimiter};
use dsql_credential_operator::check::{CheckOptions, run_checks};
use dsql_credential_operator::clock::SystemClock;
use dsql_credential_operator::config::OperatorConfig;
use dsql_credential_operator::ops::leader::{LeaseConfig, run_when_leading};
use dsql_credential_operator::ops::shutdown::{HTTP_STOP_LIMIT, exit_if_stuck};
use dsql_credential_operator::ops::{Health, Metrics, http, memory};
use dsql_credential_operator::policy::AccessPolicy;
use dsql_credential_operator::reconcile::Context;
use dsql_credential_operator::telemetry::{LogFormat, init_logging};
use dsql_credential_operator::token::TokenMinter;
use dsql_credential_operator::{controller, crd, setup};
use tracing::{error, info};

/// Keeps Aurora DSQL IAM auth tokens fresh in AWS Secrets Manager for DsqlCredential objects.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller (AWS credentials from the default chain, Kubernetes from in-cluster
    /// config or KUBECONFIG).
    Run(Box<RunArgs>),
    /// Print the DsqlCredential CustomResourceDefinition as YAML.
    Crd,
    /// Verify a setup without changing anything: cluster, CRD, RBAC, AWS credentials and
    /// region, access policy. Prints a checklist; exits non-zero if anything fails.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// Kubeconfig file (default: in-cluster config, then KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// AWS region, as for `run`.
    #[arg(long, env = "DSQL_OPERATOR_REGION")]
    region: Option<String>,
    /// Namespaces `run` would watch; RBAC is checked in each (cluster-wide when absent).
    #[arg(long = "namespace", env = "DSQL_OPERATOR_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Access policy file, as for `run`.
    #[arg(long, env = "DSQL_OPERATOR_ACCESS_POLICY")]
    access_policy: Option<std::path::PathBuf>,
    /// Also check the leader-election Lease permissions in this namespace.
    #[arg(long)]
    leader_election_namespace: Option<String>,
    /// Name of the leader Lease, as for `run`.
    #[arg(
        long,
        env = "DSQL_OPERATOR_LEADER_ELECTION_LEASE_NAME",
        default_value = "dsql-credential-operator"
    )]
    leader_election_lease_name: String,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Kubeconfig file (default: in-cluster config, then KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// AWS region for Secrets Manager. Without it (or AWS_REGION), the SDK's region chain ends
    /// at the EC2 instance metadata service, which logs a warning per attempt where pods cannot
    /// reach it; given, it is set on the AWS config loader and nothing is looked up.
    #[arg(long, env = "DSQL_OPERATOR_REGION")]
    region: Option<String>,
    /// Prefix of default secret names: <prefix>/<namespace>/<name>.
    #[arg(long, env = "DSQL_OPERATOR_SECRET_PREFIX", default_value = "dsql")]
    secret_prefix: String,
    /// Namespace to watch; repeat or comma-separate for several. All namespaces when absent.
    #[arg(long = "namespace", env = "DSQL_OPERATOR_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Credentials reconciled at once.
    #[arg(long, env = "DSQL_OPERATOR_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Ceiling on Secrets Manager writes per second (0 = unlimited; the account quota is 50/s).
    #[arg(long, env = "DSQL_OPERATOR_SECRETS_MANAGER_WRITES_PER_SECOND", default_value_t = 5.0)]
    secrets_manager_writes_per_second: f64,
    /// Ceiling on rollout restarts per second across all credentials (0 = unlimited).
    #[arg(long, env = "DSQL_OPERATOR_ROLLOUT_RESTARTS_PER_SECOND", default_value_t = 0.2)]
    rollout_restarts_per_second: f64,
    /// Access policy file (YAML): which namespaces may mint tokens for which clusters, roles,
    /// secret names and signing roles. Without it, namespaces may mint non-admin tokens into
    /// secrets under their own <prefix>/<namespace>/ path only.
    #[arg(long, env = "DSQL_OPERATOR_ACCESS_POLICY")]
    access_policy: Option<std::path::PathBuf>,
    /// Log format.
    #[arg(long, env = "DSQL_OPERATOR_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "DSQL_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Elect a leader on a coordination.k8s.io Lease so several replicas are safe.
    #[arg(long, env = "DSQL_OPERATOR_LEADER_ELECTION", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    leader_election: bool,
    /// Namespace of the leader Lease (defaults to the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "DSQL_OPERATOR_LEADER_ELECTION_LEASE_NAME",
        default_value = "dsql-credential-operator"
    )]
    leader_election_lease_name: String,
    /// Seconds a leader's lease lasts without renewal (how long a dead leader blocks a takeover).
    #[arg(long, default_value_t = 15)]
    leader_election_lease_seconds: u64,
}

fn main() -> ExitCode {
    // Before the runtime starts any thread: the setting applies to arenas not yet created.
    memory::use_one_heap_arena();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(main_on_runtime()),
        Err(e) => {
            eprintln!("could not start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn main_on_runtime() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("could not render the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check(args) => {
            let options = CheckOptions {
                kubeconfig: args.kubeconfig,
                namespaces: args.namespaces,
                region: args.region,
                access_policy: args.access_policy,
                leader_election_namespace: args.leader_election_namespace,
                leader_election_lease_name: args.leader_election_lease_name,
            };
            let lines = run_checks(&options, |line| println!("{line}")).await;
            if lines.iter().all(|l| l.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Run(args) => {
            init_logging(args.log_format);
            match run(*args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = %e, "operator failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    // A policy that cannot be read stops the operator before it acts: running without it would
    // silently widen (or narrow) what namespaces may mint.
    let access_policy = match &args.access_policy {
        Some(path) => AccessPolicy::load(path)?,
        None => AccessPolicy::default(),
    };
    info!(
        rules = access_policy.rules.len(),
        file = args
            .access_policy
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in default".to_owned()),
        "access policy loaded"
    );
    let sdk_config = setup::aws_config(args.region).await?;
    let client = kube::Client::try_from(setup::kube_config(args.kubeconfig.as_deref()).await?)?;
    // After the cluster: in the usual first run (no cluster yet) the chain's IMDS probe for
    // credentials would only delay the message that matters.
    setup::aws_credentials_configured(&sdk_config).await?;
    let config = OperatorConfig {
        secret_name_prefix: args.secret_prefix,
        namespaces: args.namespaces,
        concurrency: args.concurrency,
        secrets_manager_writes_per_second: args.secrets_manager_writes_per_second,
        rollout_restarts_per_second: args.rollout_restarts_per_second,
        access_policy,
    };
    let clock = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let secrets = SecretsManager::new(
        aws_sdk_secretsmanager::Client::new(&sdk_config),
        WriteRateLimiter::new(config.secrets_manager_writes_per_second),
        metrics.clone(),
    );
    let minter = TokenMinter::new(&sdk_config, clock.clone());
    let ctx = Arc::new(Context::new(
        client.clone(),
        secrets,
        minter,
        clock,
        config,
        metrics.clone(),
        health.clone(),
    ));
    info!(namespaces = ?ctx.config.namespaces, leader_election = args.leader_election, "starting dsql-credential-operator");

    let shutdown = futures::FutureExt::shared(Box::pin(shutdown_signal()));
    let listener = tokio::net::TcpListener::bind(args.http_addr).await.map_err(|e| {
        format!(
            "cannot listen on {} for /metrics, /healthz and /readyz: {e}",
            args.http_addr
        )
    })?;
    let server = tokio::spawn(http::serve(listener, health.clone(), metrics.clone(), shutdown.clone()));
    tokio::spawn(memory::release_free_heap_periodically(shutdown.clone()));
    tokio::spawn(exit_if_stuck(shutdown.clone()));
    if args.leader_election {
        let lease = LeaseConfig {
            namespace: args.leader_election_namespace,
            name: args.leader_election_lease_name,
            identity: std::env::var("POD_NAME")
                .unwrap_or_else(|_| format!("dsql-credential-operator-{}", std::process::id())),
            duration_seconds: args.leader_election_lease_seconds,
            grace_seconds: (args.leader_election_lease_seconds / 3).max(1),
        };
        run_when_leading(
            client,
            lease,
            health,
            metrics,
            |stop| controller::run(ctx.clone(), futures::stream::pending(), stop),
            shutdown,
        )
        .await?;
    } else {
        health.set_leading(true);
        // The only replica is the active one: the leader alerts must not see "no leader".
        metrics.set_leader(true);
        controller::run(ctx, futures::stream::pending(), shutdown).await;
    }
    // A probe's keep-alive connection would hold the server's graceful stop open.
    match tokio::time::timeout(HTTP_STOP_LIMIT, server).await {
        Ok(Ok(Ok(()))) | Err(_) => {}
        Ok(Ok(Err(e))) => return Err(format!("HTTP server: {e}").into()),
        Ok(Err(e)) => return Err(e.into()),
    }
    info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
