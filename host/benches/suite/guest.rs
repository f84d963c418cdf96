//! Python and JavaScript plugins against the program a user would write instead: a pipeline
//! whose one processor is the guest plugin doing the E2E filter + projection (`guest/*-slim`,
//! built with `meshhost plugin build`) vs a plain Python confluent-kafka + fastavro loop over
//! the same topic (`guest/plain_loop.py`). Both consume, decode, filter, project, encode,
//! produce and commit after delivery.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshhost::plugin::{self, Limits, PluginEngine, ProcessorInstance};
use meshhost::topology::execute::Executor;
use meshhost::topology::{EdgeSchema, Topology};

use crate::data;
use crate::e2e::{self, Timed, MESHHOST};
use crate::{kafka, stage};

/// The guest processor's YAML for the pipeline (see [`e2e::write_pipeline_with`]).
pub fn processors_yaml(component: &Path) -> String {
    format!(
        "\n  slim:\n    uses: {}\n    inputs: [movies]\n    with:\n      min_year: 2000\n      country: US\n      fields: [{}]\n      rename: {{title: name}}\n",
        component.display(),
        data::PROJECTED.join(", ")
    )
}

/// `meshhost plugin build` of `guest/<project>` into `scratch/<project>.wasm`.
/// `MESHHOST_BENCH_<PROJECT>=FILE` (`MESHHOST_BENCH_PYTHON_SLIM`) measures FILE instead: say, the
/// same plugin built with an older SDK, to compare.
pub fn build(project: &str, scratch: &Path) -> PathBuf {
    let variable = format!("MESHHOST_BENCH_{}", project.to_uppercase().replace('-', "_"));
    if let Some(file) = std::env::var_os(&variable) {
        // Absolute: the pipeline files that name it are written in the scratch directory.
        let file = std::fs::canonicalize(&file).unwrap_or_else(|e| panic!("{variable}: {e}"));
        eprintln!("  {project}: {} (from {variable})", file.display());
        return file;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/suite/guest").join(project);
    let component = scratch.join(format!("{project}.wasm"));
    let started = Instant::now();
    let output = Command::new(MESHHOST)
        .args(["plugin", "build"])
        .arg(&source)
        .arg("-o")
        .arg(&component)
        // The tools `sdk/install-tools.sh` installed, where `plugin build` would install them.
        .env("MESHHOST_TOOLS_DIR", crate::workspace().join("target/sdk-tools"))
        .output()
        .expect("run meshhost plugin build");
    assert!(
        output.status.success(),
        "meshhost plugin build {project}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("  built {project} in {:.1} s", started.elapsed().as_secs_f64());
    component
}

/// The Python of the interop venv (`scripts/pyenv.sh`: confluent-kafka, fastavro).
pub fn python() -> PathBuf {
    let output = Command::new(crate::workspace().join("scripts/pyenv.sh")).output().expect("run scripts/pyenv.sh");
    assert!(output.status.success(), "scripts/pyenv.sh: {}", String::from_utf8_lossy(&output.stderr));
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The plain Python loop over `input` (holding `records`, `expected` of them kept).
pub fn plain_python(broker: &str, scratch: &Path, input: &str, records: u64, expected: u64) -> Timed {
    let name = kafka::unique("bench-plain-python");
    let output = format!("{name}-out");
    kafka::create_topics(broker, &[&output]);
    let (movie, slim) = (scratch.join("movie.avsc"), scratch.join("slim.avsc"));
    std::fs::write(&movie, data::MOVIE_SCHEMA).unwrap();
    std::fs::write(&slim, data::SLIM_SCHEMA).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/suite/guest/plain_loop.py");
    let log = scratch.join(format!("{name}.log"));
    let broker_cpu_start = e2e::broker_pid(broker).map_or(0.0, |pid| e2e::cpu_seconds(&pid));
    let start = Instant::now();
    let child = Command::new(python())
        .arg(script)
        .args([broker, input, &output, &name, &records.to_string()])
        .args([&movie, &slim])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the plain Python loop");
    let pid = child.id().to_string();
    let (child, cpu) = (RefCell::new(child), Cell::new(0.0));
    // Alive while running, and after a clean exit (its output is then complete); its CPU is
    // read while it runs (it is gone from /proc once reaped).
    let alive = || {
        cpu.set(e2e::cpu_seconds(&pid).max(cpu.get()));
        child.borrow_mut().try_wait().map(|s| s.is_none_or(|s| s.success())).unwrap_or(false)
    };
    let progress = kafka::watch(broker, &output, expected as i64, Duration::from_secs(900), alive, || {})
        .unwrap_or_else(|e| {
            panic!("plain Python loop: {e}; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default())
        });
    let cpu = e2e::cpu_seconds(&pid).max(cpu.get());
    let broker_cpu = e2e::broker_pid(broker).map_or(0.0, |pid| e2e::cpu_seconds(&pid)) - broker_cpu_start;
    let status = child.into_inner().wait().expect("wait for the plain Python loop");
    assert!(
        status.success(),
        "plain Python loop: {status}; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    kafka::delete_topics(broker, &[&output]);
    let timed = Timed { records, start, progress, cpu, broker_cpu };
    eprintln!(
        "  plain Python loop: {:.0} rec/s first→last output, {:.0} rec/s wall; CPU {:.1} s + broker {:.1} s",
        timed.steady_rate(),
        timed.wall_rate(),
        timed.cpu,
        timed.broker_cpu
    );
    timed
}

/// The guest processor's `with:` configuration, as the host hands it to `init`.
fn config() -> String {
    serde_json::json!({
        "min_year": 2000,
        "country": "US",
        "fields": data::PROJECTED,
        "rename": {"title": "name"},
    })
    .to_string()
}

/// ns per input record of the guest plugin `component` run by the executor over `count` 200 B
/// records in memory, in batches of 1000 (the source's), best of `rounds`: the host's transcoding
/// both ways and the call, without the broker — where a guest pipeline's time goes, in one number.
pub fn stage(engine: &PluginEngine, component: &Path, count: usize, rounds: usize) -> f64 {
    let bytes = std::fs::read(component).expect("read the guest component");
    let plugin = engine.load("bench/slim", &bytes).expect("load the guest component");
    let inputs = vec![plugin::input_port("movies", data::MOVIE_SCHEMA).expect("the bench schema parses")];
    let instance = ProcessorInstance::new("slim", &plugin, Limits::default(), config(), inputs)
        .unwrap_or_else(|e| panic!("init the guest plugin: {e:?}"));
    let schema = EdgeSchema::parse(data::MOVIE_SCHEMA).expect("movie schema");
    let mut executor =
        Executor::new(Topology::single_processor(instance, vec![("movies".into(), schema)]).expect("topology"));
    let records = stage::source_records(200, count);
    let expected = (0..count as u64).filter(|&id| data::kept(id)).count();
    let mut run = || {
        let mut sink = stage::Count::default();
        let start = Instant::now();
        for chunk in records.chunks(1000) {
            executor.run(chunk, &mut sink).expect("the guest plugin fails no record");
        }
        assert_eq!(sink.sent, expected, "the guest plugin kept the wrong records");
        start.elapsed().as_nanos() as f64 / count as f64
    };
    run(); // warm-up: the instance's memory grows to its working size
    crate::best(&(0..rounds).map(|_| run()).collect::<Vec<_>>())
}
