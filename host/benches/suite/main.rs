//! meshhost's benchmark suite: one run, one table of ratios measured in that run.
//!
//! ```text
//! scripts/bench.sh [--quick] [--only avro,source,stage,load,startup,e2e,metrics,guest-stage,guest,catalog,postgres] [--records N] [--records-2k N] [--rounds R]
//! ```
//!
//! `scripts/bench.sh` starts the broker on port 19094, builds in release and runs this binary.
//! Run directly (`cargo bench -p meshhost --bench suite`), it uses `--broker HOST:PORT` or
//! `MESHHOST_BENCH_BROKER`, else starts `scripts/broker.sh start 19094` itself.
//!
//! Every goal is a ratio between two things measured in the same run on the same machine, so
//! the numbers hold up on a busy machine better than absolute ones; none is an assertion.

mod avro_path;
mod catalog;
mod data;
mod e2e;
mod guest;
mod kafka;
mod postgres;
mod source_decode;
mod stage;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The fastest of several timings: on a shared machine, other work only ever adds time.
pub fn best(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

struct Options {
    broker: Option<String>,
    only: Vec<String>,
    records: u64,
    records_2k: u64,
    rounds: usize,
    e2e_rounds: usize,
    /// Filter stage cases, (record size, batch size).
    stage_cases: Vec<(usize, usize)>,
    out: Option<PathBuf>,
}

fn options() -> Options {
    let mut options = Options {
        broker: std::env::var("MESHHOST_BENCH_BROKER").ok(),
        only: [
            "avro",
            "source",
            "stage",
            "load",
            "startup",
            "e2e",
            "metrics",
            "guest-stage",
            "guest",
            "catalog",
            "postgres",
        ]
        .map(String::from)
        .to_vec(),
        records: 1_000_000,
        records_2k: 250_000,
        rounds: 9,
        e2e_rounds: 5,
        stage_cases: vec![(200, 1), (200, 64), (200, 1024), (2048, 1024)],
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--broker" => options.broker = Some(value("--broker")),
            "--only" => options.only = value("--only").split(',').map(str::to_string).collect(),
            "--records" => options.records = value("--records").replace('_', "").parse().expect("--records N"),
            "--records-2k" => {
                options.records_2k = value("--records-2k").replace('_', "").parse().expect("--records-2k N")
            }
            "--rounds" => options.rounds = value("--rounds").parse().expect("--rounds R"),
            "--e2e-rounds" => options.e2e_rounds = value("--e2e-rounds").parse().expect("--e2e-rounds R"),
            "--out" => options.out = Some(PathBuf::from(value("--out"))),
            "--stage-cases" => {
                options.stage_cases = value("--stage-cases")
                    .split(',')
                    .map(|case| {
                        let (size, batch) = case.split_once('x').expect("--stage-cases SIZExBATCH,...");
                        (size.parse().expect("record size"), batch.parse().expect("batch size"))
                    })
                    .collect()
            }
            "--quick" => {
                options.records = 100_000;
                options.records_2k = 25_000;
                options.rounds = 3;
                options.e2e_rounds = 1;
            }
            "--bench" => {} // passed by `cargo bench`
            "-h" | "--help" => {
                eprintln!("usage: suite [--quick] [--only avro,source,stage,load,startup,e2e,metrics,guest-stage,guest,catalog,postgres] [--records N] [--records-2k N] [--rounds R] [--e2e-rounds R] [--stage-cases 200x1,200x1024,...] [--broker HOST:PORT] [--out FILE]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?} (see --help)"),
        }
    }
    options
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn broker(options: &Options) -> String {
    if let Some(broker) = &options.broker {
        return broker.clone();
    }
    let status = std::process::Command::new(workspace().join("scripts/broker.sh"))
        .args(["start", "19094"])
        .status()
        .expect("run scripts/broker.sh");
    assert!(status.success(), "scripts/broker.sh start 19094 failed");
    "127.0.0.1:19094".into()
}

/// One row of the table.
struct Row {
    name: String,
    measured: String,
    baseline: String,
    ratio: String,
    goal: String,
    /// None: reported, no goal.
    met: Option<bool>,
}

impl Row {
    fn new(
        name: impl Into<String>,
        measured: impl Into<String>,
        baseline: impl Into<String>,
        ratio: f64,
        goal: &str,
        met: Option<bool>,
    ) -> Row {
        Row {
            name: name.into(),
            measured: measured.into(),
            baseline: baseline.into(),
            ratio: format!("{ratio:.2}×"),
            goal: goal.into(),
            met,
        }
    }
}

fn rate(r: f64) -> String {
    let r = r.round() as u64;
    let (m, k, u) = (r / 1_000_000, r / 1000 % 1000, r % 1000);
    let digits = if m > 0 {
        format!("{m},{k:03},{u:03}")
    } else if k > 0 {
        format!("{k},{u:03}")
    } else {
        u.to_string()
    };
    format!("{digits} rec/s")
}

fn count(n: u64) -> String {
    if n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<u64>().ok()))
        .map(|kib| format!("{:.0} GiB RAM", kib as f64 / 1048576.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    format!("{model}, {cores} cores, {mem}, Linux {kernel}; load average at start {load}")
}

/// The catalog phase: writes per second and p99 against what the log allows.
fn catalog_rows(broker: &str, rows: &mut Vec<Row>) {
    use catalog::Write;
    let floor = catalog::produce_floor(broker, 200);
    let floor_text = format!("{floor:.0} produces/s");
    let topic = kafka::unique("_bench_catalog");
    let one = catalog::serve(broker, &topic);
    let second = catalog::serve(broker, &topic);
    let one_server = vec![one.url.clone()];
    let two_servers = vec![one.url.clone(), second.url.clone()];
    catalog::round(&one_server, Write::Register, 1, 1); // warm up: connections, the chaser's metadata
                                                        // The subject every published source names.
    let shared = r#"{"schema":"{\"type\":\"record\",\"name\":\"shared\",\"fields\":[]}"}"#;
    ureq::post(&format!("{}/subjects/bench-shared-value/versions", one.url))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .send(shared.as_bytes())
        .expect("register the shared subject");
    for (kind, what) in [(Write::Register, "registrations"), (Write::Publish, "source publishes")] {
        for (urls, servers) in [(&one_server, "one server"), (&two_servers, "two servers")] {
            let sequential = catalog::round(urls, kind, 1, 100);
            let goal_met = (kind == Write::Register && urls.len() == 1).then_some(sequential.per_second >= 100.0);
            rows.push(Row::new(
                format!(
                    "Catalog, {what} in a row from 1 client, {servers}: vs acknowledged produces in a row (writes/s)"
                ),
                format!("{:.0}/s, p99 {:.1} ms", sequential.per_second, sequential.p99_ms),
                floor_text.clone(),
                sequential.per_second / floor,
                if goal_met.is_some() { "≥ 100/s" } else { "(reported)" },
                goal_met,
            ));
            let concurrent = catalog::round(urls, kind, 16, 25);
            let goal_met = (kind == Write::Register && urls.len() == 1).then_some(concurrent.p99_ms <= 100.0);
            rows.push(Row::new(
                format!("Catalog, {what} from 16 clients at once (400), {servers}: vs acknowledged produces in a row (writes/s)"),
                format!("{:.0}/s, p99 {:.1} ms", concurrent.per_second, concurrent.p99_ms),
                floor_text.clone(),
                concurrent.per_second / floor,
                if goal_met.is_some() { "p99 ≤ 100 ms" } else { "(reported)" },
                goal_met,
            ));
        }
    }
    catalog::assert_same(&two_servers);
}

fn main() {
    let options = options();
    let started = Instant::now();
    let machine = machine();
    eprintln!("meshhost bench on {machine}");
    let scratch = workspace().join("target/bench");
    std::fs::create_dir_all(&scratch).expect("target/bench");
    // The compiled-plugin cache of this run's in-process engines and `meshhost run`s.
    let cache = scratch.join("cache");
    std::env::set_var("MESHHOST_CACHE_DIR", &cache);
    let enabled = |phase: &str| options.only.iter().any(|p| p == phase);
    let rounds = options.rounds;
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // Before any measurement: the broker may have to be installed and started.
    let broker = if ["e2e", "startup", "source", "metrics", "guest", "catalog", "postgres"].iter().any(|p| enabled(p)) {
        broker(&options)
    } else {
        String::new()
    };

    if enabled("catalog") {
        catalog_rows(&broker, &mut rows);
    }

    if enabled("postgres") {
        let url = postgres::start();
        let records = (options.records / 5).max(10_000);
        let r = postgres::run(&broker, &url, &scratch, &cache, records, rounds.min(3));
        let what = format!("{} movies of 200 B", count(records));
        rows.push(Row::new(
            format!(
                "Postgres sink, insert mode, {what}: meshhost (Kafka → table) vs psql \\copy of the same rows (rows/s)"
            ),
            rate(r.insert),
            rate(r.copy),
            r.insert / r.copy,
            "≥ 0.5×",
            Some(r.insert / r.copy >= 0.5),
        ));
        rows.push(Row::new(
            format!("Postgres sink, upsert mode, {what}: meshhost vs psql \\copy of the same rows (rows/s)"),
            rate(r.upsert),
            rate(r.copy),
            r.upsert / r.copy,
            "(reported)",
            None,
        ));
        rows.push(Row::new(
            format!("Postgres sink, upsert mode, {what}: meshhost vs a Python confluent-kafka + psycopg executemany loop (rows/s)"),
            rate(r.upsert),
            rate(r.python),
            r.upsert / r.python,
            "≥ 5×",
            Some(r.upsert / r.python >= 5.0),
        ));
    }

    if enabled("avro") {
        for size in [200, 2048] {
            let r = avro_path::run(size, 10_000, rounds);
            let speedup = r.apache_ns / r.host_ns;
            rows.push(Row::new(
                format!("Avro path, filter+projection, {size} B records: host vs apache-avro Value decode+encode (ns/record)"),
                format!("{:.0} ns", r.host_ns),
                format!("{:.0} ns", r.apache_ns),
                speedup,
                "≥ 5× faster",
                Some(speedup >= 5.0),
            ));
        }
    }

    if enabled("source") {
        let size = 200;
        let r = source_decode::run(&broker, size, 10_000, rounds);
        rows.push(Row::new(
            format!("Source decode, {size} B records: confluent-avro (writer = reader schema) vs avro (records/s)"),
            rate(1e9 / r.confluent_ns),
            rate(1e9 / r.avro_ns),
            r.avro_ns / r.confluent_ns,
            "(reported)",
            None,
        ));
        rows.push(Row::new(
            format!(
                "Source decode, {size} B records: confluent-avro, older writer version resolved vs avro (records/s)"
            ),
            rate(1e9 / r.resolved_ns),
            rate(1e9 / r.avro_ns),
            r.avro_ns / r.resolved_ns,
            "(reported)",
            None,
        ));
    }

    if enabled("stage") {
        let engine = meshhost::plugin::PluginEngine::new().expect("engine");
        for r in stage::run(&engine, &options.stage_cases, 100_000, rounds) {
            let ratio = r.call_ns / r.native_ns;
            let extra = r.call_ns - r.native_ns;
            let (goal, met) = if r.batch == 1024 && r.size == 200 {
                ("≤ 2× and ≤ +50 ns", Some(ratio <= 2.0 && extra <= 50.0))
            } else {
                ("(reported)", None)
            };
            rows.push(Row::new(
                format!(
                    "Filter stage, {} B records, batch {}: component call vs native Rust (ns/record)",
                    r.size, r.batch
                ),
                format!("{:.0} ns ({extra:+.0})", r.call_ns),
                format!("{:.0} ns", r.native_ns),
                ratio,
                goal,
                met,
            ));
            let extra = r.wasm_ns - r.native_ns;
            rows.push(Row::new(
                format!(
                    "Filter stage, {} B records, batch {}: executor (datum check, routing) + component vs native Rust (ns/record)",
                    r.size, r.batch
                ),
                format!("{:.0} ns ({extra:+.0})", r.wasm_ns),
                format!("{:.0} ns", r.native_ns),
                r.wasm_ns / r.native_ns,
                "(reported)",
                None,
            ));
        }
    }

    if enabled("load") {
        let load = stage::load(&scratch, rounds.min(3));
        let ratio = load.compile_ms / load.cached_ms;
        rows.push(Row::new(
            "Plugin load, filter + projection: compile vs compiled-plugin cache (ms)",
            format!("{:.2} ms cached", load.cached_ms),
            format!("{:.0} ms compile", load.compile_ms),
            ratio,
            "≥ 100× faster",
            Some(ratio >= 100.0),
        ));
        std::env::set_var("MESHHOST_CACHE_DIR", &cache);
    }

    if enabled("startup") {
        let r = e2e::startup(&broker, &scratch, rounds.clamp(1, 2));
        rows.push(Row::new(
            "Start-up: `meshhost run` spawn → first output record, warm vs empty plugin cache (ms)",
            format!("{:.0} ms warm", r.warm_ms),
            format!("{:.0} ms cold", r.cold_ms),
            r.cold_ms / r.warm_ms,
            "(reported)",
            None,
        ));
        rows.push(Row::new(
            "Start-up: `meshhost run` (warm cache) vs raw passthrough, start → first output record (ms)",
            format!("{:.0} ms", r.warm_ms),
            format!("{:.0} ms", r.passthrough_ms),
            r.warm_ms / r.passthrough_ms,
            "(reported)",
            None,
        ));
    }

    if enabled("metrics") {
        // The same E2E run with the metrics listener (and tap hook) on and off, interleaved.
        let (size, records) = (200, (options.records / 2).max(10_000));
        let input = kafka::unique("bench-in-metrics");
        kafka::create_topics(&broker, &[&input]);
        let expected = kafka::produce(&broker, &input, size, records);
        let dir = tempfile::tempdir_in(&scratch).unwrap();
        e2e::validate(&e2e::write_pipeline(dir.path(), "warmup", &broker, &input, "x", "y"), &cache);
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..options.e2e_rounds {
            std::env::remove_var("MESHHOST_BENCH_RUN_ARGS");
            off.push(e2e::meshhost(&broker, &scratch, &cache, &input, records, expected).timed.steady_rate());
            std::env::set_var("MESHHOST_BENCH_RUN_ARGS", "--metrics-listen 127.0.0.1:0");
            on.push(e2e::meshhost(&broker, &scratch, &cache, &input, records, expected).timed.steady_rate());
        }
        std::env::remove_var("MESHHOST_BENCH_RUN_ARGS");
        let fastest = |rates: Vec<f64>| rates.into_iter().fold(0.0, f64::max);
        let (on, off) = (fastest(on), fastest(off));
        rows.push(Row::new(
            format!(
                "E2E {size} B records, {}: metrics listener on vs off (input rec/s, first → last output)",
                count(records)
            ),
            rate(on),
            rate(off),
            on / off,
            "(reported)",
            None,
        ));
    }

    if enabled("e2e") {
        let mut rss: Vec<(u64, u64, u64)> = Vec::new(); // (records, hwm at 25%, hwm)
        for (size, records) in [(200, options.records), (2048, options.records_2k)] {
            if records == 0 {
                continue;
            }
            let input = kafka::unique(&format!("bench-in-{size}"));
            kafka::create_topics(&broker, &[&input]);
            let t = Instant::now();
            let expected = kafka::produce(&broker, &input, size, records);
            eprintln!(
                "E2E {size} B: produced {records} records in {:.1} s; the filter keeps {expected}",
                t.elapsed().as_secs_f64()
            );
            // Plugins compiled into the cache before timing (a no-op when already there).
            let dir = tempfile::tempdir_in(&scratch).unwrap();
            e2e::validate(&e2e::write_pipeline(dir.path(), "warmup", &broker, &input, "x", "y"), &cache);

            let mut pass = Vec::new();
            let mut mesh = Vec::new();
            let mut bare = Vec::new();
            for _ in 0..options.e2e_rounds {
                pass.push(e2e::passthrough(&broker, &input, records, true));
                mesh.push(e2e::meshhost(&broker, &scratch, &cache, &input, records, expected));
                bare.push(e2e::passthrough(&broker, &input, records, false));
            }
            // Best of the rounds: on a shared machine, the least disturbed run of each.
            let top = |rates: Vec<f64>| rates.into_iter().fold(0.0, f64::max);
            let pass_steady = top(pass.iter().map(e2e::Timed::steady_rate).collect());
            let mesh_steady = top(mesh.iter().map(|m| m.timed.steady_rate()).collect());
            let pass_wall = top(pass.iter().map(e2e::Timed::wall_rate).collect());
            let mesh_wall = top(mesh.iter().map(|m| m.timed.wall_rate()).collect());
            let bare_steady = top(bare.iter().map(e2e::Timed::steady_rate).collect());
            let goal = if size == 200 { 0.7 } else { 0.85 };
            let ratio = mesh_steady / pass_steady;
            rows.push(Row::new(
                format!("E2E {size} B records, {}: filter (keeps 50%) + projection vs raw passthrough (input rec/s, first → last output)", count(records)),
                rate(mesh_steady),
                rate(pass_steady),
                ratio,
                &format!("≥ {goal:.2}×"),
                Some(ratio >= goal),
            ));
            let (pass_median, mesh_median) = (
                median(pass.iter().map(e2e::Timed::steady_rate).collect()),
                median(mesh.iter().map(|m| m.timed.steady_rate()).collect()),
            );
            rows.push(Row::new(
                format!("E2E {size} B records, {}: same, median of the rounds instead of the best", count(records)),
                rate(mesh_median),
                rate(pass_median),
                mesh_median / pass_median,
                "(reported)",
                None,
            ));
            rows.push(Row::new(
                format!("E2E {size} B records, {}: same, vs a passthrough that drops headers (key, value and timestamp only)", count(records)),
                rate(mesh_steady),
                rate(bare_steady),
                mesh_steady / bare_steady,
                "(reported)",
                None,
            ));
            rows.push(Row::new(
                format!(
                    "E2E {size} B records, {}: same, wall clock from process/client start (incl. start-up, group join)",
                    count(records)
                ),
                rate(mesh_wall),
                rate(pass_wall),
                mesh_wall / pass_wall,
                "(reported)",
                None,
            ));
            // Where the CPU goes (2 cores shared by the broker, the client and everyone else).
            let cpu = |t: &e2e::Timed| t.cpu_per_million();
            let fastest_pass = pass.iter().max_by(|a, b| a.steady_rate().total_cmp(&b.steady_rate())).unwrap();
            let fastest_mesh =
                mesh.iter().map(|m| &m.timed).max_by(|a, b| a.steady_rate().total_cmp(&b.steady_rate())).unwrap();
            let (mesh_cpu, mesh_broker) = cpu(fastest_mesh);
            let (pass_cpu, pass_broker) = cpu(fastest_pass);
            rows.push(Row::new(
                format!("E2E {size} B records: CPU seconds per 1M input records, meshhost vs passthrough (+ broker)"),
                format!("{mesh_cpu:.1} s (+{mesh_broker:.1})"),
                format!("{pass_cpu:.1} s (+{pass_broker:.1})"),
                mesh_cpu / pass_cpu,
                "(reported)",
                None,
            ));
            let hwm = mesh.iter().map(|m| m.hwm_kib).max().unwrap();
            let hwm_quarter = mesh.iter().map(|m| m.hwm_quarter_kib).max().unwrap();
            rss.push((records, hwm_quarter, hwm));
            if size == 200 {
                // The same pipeline over a topic half the size: peak RSS must not follow. (Both
                // sizes exceed librdkafka's 64 MiB prefetch queue, which a smaller topic fits in.)
                let small = records / 2;
                let small_input = kafka::unique("bench-in-200-small");
                kafka::create_topics(&broker, &[&small_input]);
                let small_expected = kafka::produce(&broker, &small_input, size, small);
                let run = e2e::meshhost(&broker, &scratch, &cache, &small_input, small, small_expected);
                kafka::delete_topics(&broker, &[&small_input]);
                let ratio = hwm as f64 / run.hwm_kib as f64;
                rows.push(Row::new(
                    format!(
                        "Peak RSS (VmHWM) of `meshhost run`, 200 B records: {} vs {} record topic",
                        count(records),
                        count(small)
                    ),
                    mib(hwm),
                    mib(run.hwm_kib),
                    ratio,
                    "bounded: ≤ 1.2× for 2× the records",
                    Some(ratio <= 1.2),
                ));
            } else {
                rows.push(Row::new(
                    format!(
                        "Peak RSS (VmHWM) of `meshhost run`, 2 KB records, {}: at end vs at 25% of the output",
                        count(records)
                    ),
                    mib(hwm),
                    mib(hwm_quarter),
                    hwm as f64 / hwm_quarter.max(1) as f64,
                    "(reported)",
                    None,
                ));
            }
            kafka::delete_topics(&broker, &[&input]);
        }
        notes.push(format!(
            "Peak RSS of `meshhost run` at 25% of the output / at the end: {}",
            rss.iter()
                .map(|(n, q, h)| format!("{}: {} / {}", count(*n), mib(*q), mib(*h)))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }

    // Both guest phases measure the same two builds (each takes 10-30 s): built once.
    let guest_builds = (enabled("guest-stage") || enabled("guest"))
        .then(|| (guest::build("python-slim", &scratch), guest::build("js-slim", &scratch)));

    if let (true, Some((python, js))) = (enabled("guest-stage"), &guest_builds) {
        // Where a guest pipeline's time goes, without the broker: the executor over records in
        // memory, with the Python or JS plugin as its one processor.
        let engine = meshhost::plugin::PluginEngine::new().expect("engine");
        let count = 100_000;
        let mut filter = stage::wasm_filter(&engine);
        let records = stage::source_records(200, count);
        stage::time_wasm(&mut filter, &records, 1000); // warm-up
        let rust =
            best(&(0..rounds.min(5)).map(|_| stage::time_wasm(&mut filter, &records, 1000).0).collect::<Vec<_>>());
        for (lang, component) in [("Python", python), ("JavaScript", js)] {
            let ns = guest::stage(&engine, component, count, rounds.min(5));
            eprintln!("guest stage {lang}: {:.2} µs/record", ns / 1000.0);
            rows.push(Row::new(
                format!("Guest {lang} plugin stage, 200 B records, batch 1000, in memory: executor + filter/projection plugin vs the stock Rust filter stage (µs/record)"),
                format!("{:.2} µs", ns / 1000.0),
                format!("{:.2} µs", rust / 1000.0),
                ns / rust,
                "(reported)",
                None,
            ));
        }
    }

    if let (true, Some((python, js))) = (enabled("guest"), &guest_builds) {
        // Python and JS plugins vs the plain Python program a user would write instead.
        let (size, records) = (200, (options.records / 5).max(10_000));
        let input = kafka::unique("bench-in-guest");
        kafka::create_topics(&broker, &[&input]);
        let expected = kafka::produce(&broker, &input, size, records);
        let (python_yaml, js_yaml) = (guest::processors_yaml(python), guest::processors_yaml(js));
        let dir = tempfile::tempdir_in(&scratch).unwrap();
        for (name, yaml) in [("warmup-py", &python_yaml), ("warmup-js", &js_yaml)] {
            e2e::validate(&e2e::write_pipeline_with(dir.path(), name, &broker, &input, "x", "y", yaml), &cache);
        }
        e2e::validate(&e2e::write_pipeline(dir.path(), "warmup", &broker, &input, "x", "y"), &cache);
        let (mut plain, mut py, mut js_runs, mut rust) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..options.e2e_rounds {
            plain.push(guest::plain_python(&broker, &scratch, &input, records, expected));
            py.push(e2e::meshhost_with(&broker, &scratch, &cache, &input, records, expected, &python_yaml).timed);
            js_runs.push(e2e::meshhost_with(&broker, &scratch, &cache, &input, records, expected, &js_yaml).timed);
            rust.push(e2e::meshhost(&broker, &scratch, &cache, &input, records, expected).timed);
        }
        kafka::delete_topics(&broker, &[&input]);
        let top = |runs: &[e2e::Timed]| runs.iter().map(e2e::Timed::steady_rate).fold(0.0, f64::max);
        let (plain, py, js, rust) = (top(&plain), top(&py), top(&js_runs), top(&rust));
        let micros = |rate: f64| format!("{:.1} µs", 1e6 / rate);
        for (lang, measured) in [("Python", py), ("JavaScript", js)] {
            rows.push(Row::new(
                format!(
                    "Guest {lang} plugin, {size} B records, {}: pipeline with one {lang} processor (filter + projection) vs a plain Python confluent-kafka + fastavro loop (input rec/s, first → last output)",
                    count(records)
                ),
                rate(measured),
                rate(plain),
                measured / plain,
                "≥ 1.00×",
                Some(measured >= plain),
            ));
        }
        for (lang, measured) in [("Python", py), ("JavaScript", js)] {
            rows.push(Row::new(
                format!(
                    "Guest {lang} plugin: wall time per input record, vs the stock Rust filter + projection pipeline"
                ),
                micros(measured),
                micros(rust),
                rust / measured,
                "(reported)",
                None,
            ));
        }
        notes.push(format!(
            "Guest plugins, time per input record (1 / best steady rate): Python plugin {}, JavaScript plugin {}, plain Python loop {}, stock Rust plugins {}",
            micros(py),
            micros(js),
            micros(plain),
            micros(rust)
        ));
    }

    let mut table = String::new();
    writeln!(table, "meshhost benchmark suite — {machine}").unwrap();
    writeln!(table, "suite time {:.0} s; micro-benchmarks: best of {rounds} interleaved rounds; E2E: best of {} interleaved round(s)\n", started.elapsed().as_secs_f64(), options.e2e_rounds).unwrap();
    writeln!(table, "| Benchmark | meshhost | baseline | ratio | goal | result |").unwrap();
    writeln!(table, "|---|---:|---:|---:|---|---|").unwrap();
    for row in &rows {
        let result = match row.met {
            Some(true) => "met",
            Some(false) => "**NOT MET**",
            None => "—",
        };
        writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} |",
            row.name, row.measured, row.baseline, row.ratio, row.goal, result
        )
        .unwrap();
    }
    for note in &notes {
        writeln!(table, "\n{note}").unwrap();
    }
    let met = rows.iter().filter(|r| r.met == Some(true)).count();
    let goals = rows.iter().filter(|r| r.met.is_some()).count();
    writeln!(table, "\nGoals met: {met} of {goals}").unwrap();
    println!("\n{table}");
    let out = options.out.unwrap_or_else(|| scratch.join("results.md"));
    std::fs::write(&out, &table).expect("write the results");
    eprintln!("(table written to {})", out.display());
}
