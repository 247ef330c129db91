//! The bundled gateway program as a library entry point: Kong's declarative file, Admin API,
//! reload, cluster, TLS, access log and metrics, behind a command line; an application adds
//! its own plugins and gets its own gateway binary.
//!
//! ```no_run
//! use tower_gateway::program::Program;
//!
//! fn main() -> std::process::ExitCode {
//!     // The bundled gateway (`examples/gateway.rs`); add plugins with `.plugin(...)`.
//!     Program::new().run()
//! }
//! ```
//!
//! `examples/custom_plugin.rs` builds a gateway with a plugin of its own. The command line is
//! the one `--help` prints ([`HELP`]).

mod args;
mod demo;
mod logging;
mod reload;
mod run;

use std::process::ExitCode;

use crate::config::Config;
use crate::log::Format;
use crate::plugin::{Definition, Registry, RegistryError};

pub use args::HELP;

/// The configuration run without `--config`: `examples/gateway.yaml`, two routes to the demo
/// upstream.
pub const BUNDLED_CONFIG: &str = include_str!("../../examples/gateway.yaml");

/// Where the demo upstream listens when the bundled configuration runs.
pub const DEMO_UPSTREAM: &str = "127.0.0.1:9001";

/// The gateway program: a command line over a [`Registry`] of plugins. See the
/// [module docs](self).
///
/// ```
/// use tower_gateway::program::Program;
///
/// // The bundled gateway program, with a default configuration of your own; `run` reads the
/// // command line (`--config`, `--proxy-listen`, …) and serves until a signal.
/// let program = Program::new().bundled_config(
///     "_format_version: \"3.0\"\nservices: []\n",
///     "built-in",
/// );
/// # let _ = program;
/// ```
#[derive(Debug)]
pub struct Program {
    registry: Registry,
    bundled: (String, String),
    refused: Option<RegistryError>,
}

impl Default for Program {
    fn default() -> Self {
        Self::new()
    }
}

impl Program {
    /// The bundled gateway: the built-in plugins, [`BUNDLED_CONFIG`] without `--config`.
    pub fn new() -> Self {
        Self {
            registry: Registry::builtin(),
            bundled: (
                BUNDLED_CONFIG.to_owned(),
                "examples/gateway.yaml (bundled)".to_owned(),
            ),
            refused: None,
        }
    }

    /// Adds a plugin: configuration files and the Admin API may then name it. A name already
    /// taken is reported when the program runs (exit code 2).
    pub fn plugin(mut self, definition: Definition) -> Self {
        if let Err(err) = self.registry.register(definition)
            && self.refused.is_none()
        {
            self.refused = Some(err);
        }
        self
    }

    /// Replaces the plugins with `registry`'s.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// The configuration run without `--config` (with the demo upstream on
    /// [`DEMO_UPSTREAM`]); `source` names it in logs and errors.
    pub fn bundled_config(mut self, yaml: impl Into<String>, source: impl Into<String>) -> Self {
        self.bundled = (yaml.into(), source.into());
        self
    }

    /// Runs with the process's command line until SIGINT/SIGTERM. Exit codes: 0 clean
    /// shutdown, 1 runtime error, 2 invalid arguments or configuration.
    pub fn run(self) -> ExitCode {
        self.run_with_args(std::env::args().skip(1))
    }

    /// Runs with `args` (without the program name) as the command line.
    pub fn run_with_args(self, args: impl IntoIterator<Item = String>) -> ExitCode {
        if let Some(err) = &self.refused {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
        main(args.into_iter(), self)
    }
}

fn main(argv: impl Iterator<Item = String>, program: Program) -> ExitCode {
    let args = match args::parse_args(argv) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let registry = program.registry;
    let (config, text, source) = match &args.config {
        Some(file) => (
            Config::from_file_with(file, &registry),
            std::fs::read_to_string(file).unwrap_or_default(),
            file.clone(),
        ),
        None => {
            let (text, source) = program.bundled;
            (Config::from_yaml_with(&text, &registry), text, source)
        }
    };
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    // The file's global file-log plugin: access records as JSON lines in that file.
    let file_log = config
        .plugins
        .iter()
        .filter(|p| p.enabled)
        .find_map(|p| p.config.get::<crate::config::FileLogConfig>())
        .map(|c| c.path.clone());
    let file = match &file_log {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(file) => Some(file),
            Err(err) => {
                eprintln!("error: file-log: cannot open {path}: {err}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let mut args = args;
    let stderr_json = args.access_log == Some(Format::Json);
    // Access records are lines written by a background thread from per-worker buffers: to
    // stderr in the chosen format unless it is off, and as JSON lines to the file-log
    // plugin's file.
    let mut access = args.access_log.map(|format| {
        crate::log::AccessLogLayer::new(format)
            .write_to(format, crate::log::LineWriter::new(logging::Stderr))
    });
    if let Some(file) = file {
        let layer = access.unwrap_or_else(crate::log::AccessLogLayer::json);
        access = Some(layer.write_to(Format::Json, crate::log::LineWriter::new(file)));
    }
    args.access = access;
    logging::init_logging(stderr_json);
    // Thread per core: the proxy's workers have runtimes of their own (see `Server::
    // worker_threads`); this one serves the Admin API and runs the background tasks.
    let mut builder = match args.edge.runtime {
        args::Runtime::ThreadPerCore => tokio::runtime::Builder::new_current_thread(),
        args::Runtime::WorkStealing => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(args.edge.workers.max(1));
            builder
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    drop(config);
    runtime.block_on(run::run(args, text, source, registry))
}
