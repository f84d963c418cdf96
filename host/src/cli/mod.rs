//! The `meshhost` command line: the verbs, one file each, dispatched from here. What several
//! verbs share (reading and planning a pipeline file, the error that decides the exit code) is
//! in [`common`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod catalog;
mod common;
mod graph;
mod lock;
mod plugin;
mod reset;
mod run;
mod source;
mod tap;
mod testkit;
mod topics;
mod validate;

pub use common::{run_settings, CliError};

/// Exit code for invalid input (a pipeline file, a plugin, arguments).
pub const EXIT_INVALID: u8 = 2;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;

/// Data movement and processing host: Kafka topics and captured Postgres tables → WebAssembly processors → Kafka topics and Postgres tables.
#[derive(Debug, Parser)]
#[command(name = "meshhost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline until SIGINT or SIGTERM, then drain, flush, commit and exit 0.
    Run(run::RunArgs),
    /// Produce JSON lines from stdin to a topic, Avro-encoded when a schema is given.
    Produce(topics::ProduceArgs),
    /// Print a topic's records as JSON lines, decoding Avro with a schema.
    Consume(topics::ConsumeArgs),
    /// Write PIPELINE.lock: the exact version and digest of every plugin the pipeline uses.
    Lock(lock::LockArgs),
    /// Print a live sample of the records on an edge of a running pipeline (needs its metrics
    /// listener): JSON lines, decoded with the edge's schema.
    Tap(tap::TapArgs),
    /// Move a pipeline's committed offsets (replay, backfill, skip), while no instance runs.
    Reset(reset::ResetArgs),
    /// The catalog: meshhost's Schema Registry (the Confluent REST API), kept in a Kafka topic.
    Catalog {
        #[command(subcommand)]
        command: catalog::CatalogCommand,
    },
    /// Publish, find and inspect the sources of the catalog (`meshhost catalog serve`).
    Source {
        /// The catalog server.
        #[arg(long, global = true, env = "MESHHOST_CATALOG_URL", default_value = "http://127.0.0.1:8081")]
        catalog: String,
        #[command(subcommand)]
        command: source::SourceCommand,
    },
    /// Publish, list, inspect, verify and yank plugins in a registry directory.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// Draw a pipeline's DAG, each edge labelled with its schema's fields (offline, like validate).
    Graph(graph::GraphArgs),
    /// Check a pipeline offline: the file, every plugin and every edge's schema. Exit 2 if invalid.
    Validate(validate::ValidateArgs),
}

/// Run the CLI; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESHHOST_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    // MESHHOST_LOG_FORMAT=json: one JSON object per line, for log collectors.
    if common::json_logs() {
        logs.with_writer(std::io::stderr).json().init();
    } else {
        // Log lines scroll above `run`'s status line on a terminal.
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        logs.with_writer(|| crate::observe::status::LogWriter).with_ansi(terminal).init();
    }
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Invalid(problems)) => {
            match problems.0.as_slice() {
                [only] if only.path.is_empty() => eprintln!("error: {}", only.message),
                _ => eprintln!("error: invalid pipeline\n{problems}"),
            }
            ExitCode::from(EXIT_INVALID)
        }
        Err(CliError::Failed(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn execute(command: Command) -> Result<(), CliError> {
    match command {
        Command::Validate(args) => validate::execute(args),
        Command::Graph(args) => graph::execute(args),
        Command::Produce(args) => topics::produce_command(args),
        Command::Consume(args) => topics::consume_command(args),
        Command::Lock(args) => lock::execute(args),
        Command::Tap(args) => tap::execute(args),
        Command::Reset(args) => reset::execute(args),
        Command::Plugin { command } => plugin::execute(command),
        Command::Source { catalog, command } => source::execute(&catalog, command),
        Command::Catalog { command } => catalog::execute(command),
        Command::Run(args) => run::execute(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
