//! `meshhost tap`: a live sample of the records on an edge of a running pipeline.

use std::path::PathBuf;

use anyhow::Context as _;

use super::common::CliError;
use crate::config::{PipelineConfig, Problems};

/// The arguments of `meshhost tap`.
#[derive(Debug, clap::Args)]
pub struct TapArgs {
    /// The pipeline file (its `observability.metrics_listen` says where it listens).
    pub pipeline: PathBuf,
    /// A source id, a processor id (its first output), or `processor.port`.
    pub edge: String,
    /// Stop after this many records.
    #[arg(long, default_value_t = 10)]
    pub max: usize,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// The run's metrics listener, overriding the file (`--metrics-listen` of `run`).
    #[arg(long)]
    pub listen: Option<String>,
}

pub fn execute(args: TapArgs) -> Result<(), CliError> {
    let TapArgs { pipeline, edge, max, seconds, listen } = args;
    let config = PipelineConfig::load(&pipeline)?;
    let listen = listen.or_else(|| config.observability.and_then(|o| o.metrics_listen)).ok_or_else(|| {
        CliError::Invalid(Problems::one(
            "",
            "the pipeline has no metrics listener: give --listen, or set observability.metrics_listen",
        ))
    })?;
    let url = format!("http://{listen}/tap/{}?max={max}&seconds={seconds}", crate::schema_registry::encode_path(&edge));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs_f64(seconds + 10.0)))
        .build()
        .into();
    let mut response = agent.get(&url).call().with_context(|| format!("is the pipeline running? {url}"))?;
    let body = response.body_mut().read_to_string().context("cannot read the tap")?;
    if response.status().as_u16() == 404 {
        return Err(CliError::Invalid(Problems::one("", body.trim().to_string())));
    }
    print!("{body}");
    Ok(())
}
