//! Command line of dsql-credential-operator: `run` the controller, or print the `crd`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use dsql_credential_operator::aws::{SecretsManager, WriteRateLimiter};
use dsql_credential_operator::clock::SystemClock;
use dsql_credential_operator::config::OperatorConfig;
use dsql_credential_operator::reconcile::Context;
use dsql_credential_operator::telemetry::{LogFormat, init_logging};
use dsql_credential_operator::token::TokenMinter;
use dsql_credential_operator::{controller, crd};
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
    Run(RunArgs),
    /// Print the DsqlCredential CustomResourceDefinition as YAML.
    Crd,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// AWS region for Secrets Manager (defaults to the SDK's region chain, e.g. AWS_REGION).
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
    /// Log format.
    #[arg(long, env = "DSQL_OPERATOR_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
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
        Command::Run(args) => {
            init_logging(args.log_format);
            match run(args).await {
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
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = args.region {
        loader = loader.region(aws_config::Region::new(region));
    }
    let sdk_config = loader.load().await;
    let client = kube::Client::try_default().await?;
    let config = OperatorConfig {
        secret_name_prefix: args.secret_prefix,
        namespaces: args.namespaces,
        concurrency: args.concurrency,
        secrets_manager_writes_per_second: args.secrets_manager_writes_per_second,
    };
    let clock = Arc::new(SystemClock);
    let secrets = SecretsManager::new(
        aws_sdk_secretsmanager::Client::new(&sdk_config),
        WriteRateLimiter::new(config.secrets_manager_writes_per_second),
    );
    let minter = TokenMinter::new(&sdk_config, clock.clone());
    let ctx = Arc::new(Context::new(client, secrets, minter, clock, config));
    info!(namespaces = ?ctx.config.namespaces, "starting dsql-credential-operator");
    controller::run(ctx, futures::stream::pending(), shutdown_signal()).await;
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
