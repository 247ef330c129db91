//! The declarative configuration loader: any text is either a configuration that builds a
//! gateway, or an error with a path; never a panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use tower_gateway::config::{Config, Gateway, Settings};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_yaml(text) else {
        return;
    };
    let _guard = common::runtime().enter();
    let _ = Gateway::from_config(&config, &Settings::default());
});
