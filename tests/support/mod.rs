#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Shared test support. Each integration test crate that needs it starts with `mod support;`;
//! not every crate uses every helper, hence `dead_code`.

pub use kube_fake_apiserver as apiserver;
pub mod agent;
pub mod aws_proxy;
pub mod credential;
pub mod env;
pub mod lease;
pub mod login_server;
pub mod logs;
pub mod moto;
pub mod permissions;
pub mod process;
pub mod rbac;
pub mod secret;
pub mod skip;
pub mod token_check;
