#![allow(dead_code)]
//! Shared test support. Each integration test crate that needs it starts with
//! `mod support;`; not every crate uses every helper, hence `dead_code`.

pub mod aws_proxy;
pub mod moto;
pub mod token_check;
