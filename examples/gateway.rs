//! The bundled gateway: a Kong-compatible declarative file in, a running proxy out.
//!
//! ```text
//! cargo run --release --example gateway --features program     # bundled config + demo upstream
//! cargo run --release --example gateway --features program -- --config kong.yaml
//! ```
//!
//! See `--help` for every option. The program itself is [`tower_gateway::program::Program`];
//! `examples/custom_plugin.rs` shows one with a plugin of its own.

use std::process::ExitCode;

fn main() -> ExitCode {
    tower_gateway::program::Program::new().run()
}
