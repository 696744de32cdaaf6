//! The benchmark's command line.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub(crate) n: usize,
    pub(crate) smoke: bool,
    pub(crate) out: Option<PathBuf>,
    pub(crate) concurrency: u16,
    /// Latency is measured for the renewals falling due within this many seconds (0: all of
    /// them; the rest are then caught up without being measured).
    pub(crate) window_secs: i64,
    /// Credentials created for the default-rate-limit run.
    pub(crate) rate_n: usize,
    /// Tokens minted per implementation.
    pub(crate) mint_tokens: usize,
    /// Seconds of sampling memory at rest, once the start-up reconciles have settled.
    pub(crate) steady_secs: u64,
    /// Only the memory figures (the operator binary through N created at once, a mass rotation,
    /// a restart and a relist): a quick loop for memory work.
    pub(crate) memory_only: bool,
    /// Runs the memory step's binary under heaptrack, writing the heap profile here (the
    /// restarted binary's with the extension `restart`).
    pub(crate) heaptrack: Option<PathBuf>,
}

impl Args {
    pub(crate) fn parse() -> Args {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let value = |name: &str| -> Option<String> {
            argv.iter()
                .position(|a| a == name)
                .and_then(|i| argv.get(i + 1).cloned())
                .or_else(|| {
                    argv.iter()
                        .find_map(|a| a.strip_prefix(&format!("{name}=")).map(str::to_owned))
                })
        };
        let number = |name: &str| {
            value(name).map(|v| {
                v.parse::<usize>()
                    .unwrap_or_else(|_| panic!("{name} {v}: not a number"))
            })
        };
        let smoke = value("--n").is_none();
        let n = number("--n").unwrap_or(20);
        assert!(n >= 1, "--n must be at least 1");
        Args {
            n,
            smoke,
            out: value("--out").map(PathBuf::from),
            concurrency: number("--concurrency").unwrap_or(16) as u16,
            window_secs: number("--window-secs").unwrap_or(if smoke { 5 } else { 0 }) as i64,
            rate_n: number("--rate-n").unwrap_or(if smoke { 15 } else { n.min(300) }),
            mint_tokens: number("--mint-tokens").unwrap_or(if smoke { 200 } else { 5000 }),
            steady_secs: number("--steady-secs").unwrap_or(if smoke { 2 } else { 20 }) as u64,
            memory_only: argv.iter().any(|a| a == "--memory-only"),
            heaptrack: value("--heaptrack").map(PathBuf::from),
        }
    }
}
