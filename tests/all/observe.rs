//! Watching a running pipeline: a real Prometheus scrapes `meshhost run --metrics-listen`, and
//! PromQL through its HTTP API returns the exact counts of a known run.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::movies::{self, FILTER_AND_PROJECTION};
use crate::support::*;

fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    match agent.get(url).call() {
        Ok(mut response) => (response.status().as_u16(), response.body_mut().read_to_string().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// A Prometheus server scraping `target` every second, stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let status = Command::new(workspace().join("scripts/prometheus.sh")).arg("install").status().unwrap();
        assert!(status.success(), "scripts/prometheus.sh install failed");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: meshhost\n    static_configs:\n      - targets: ['{target}']\n"),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let url = format!("http://{listen}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&format!("{url}/-/ready")).0 != 200 {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        Prometheus { child, url, _dir: dir }
    }

    /// The value of a PromQL query that returns one sample (None: no sample).
    fn query(&self, promql: &str) -> Option<f64> {
        let encoded: String = promql
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let (_, body) = get(&format!("{}/api/v1/query?query={encoded}", self.url));
        let answer: Json = serde_json::from_str(&body).ok()?;
        let result = answer["data"]["result"].as_array()?;
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Wait until `promql` gives `expected` (Prometheus scrapes every second).
    fn wait_for(&self, promql: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.query(promql);
            if value == Some(expected) {
                return;
            }
            assert!(Instant::now() < deadline, "{promql} = {value:?}, expected {expected}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_exact_counts_of_a_known_run() {
    let (input, output, dead_letter) = pipeline_topics("obs", 2);
    let movies = movies::movies(40);
    let kept = movies.iter().filter(|m| m.is_recent_us()).count();
    assert!(kept > 0 && kept < movies.len());
    let mut records: Vec<KeyValue> = movies.iter().map(|m| (Some(m.key()), Some(m.avro()))).collect();
    records.push((Some(b"bad".to_vec()), Some(b"not avro".to_vec())));
    produce(&input, &records);

    let dir = PipelineDir::new();
    let name = unique("obs");
    let pipeline = movies::pipeline(&dir, &name, &input, FILTER_AND_PROJECTION, "slim", &output, &dead_letter);
    let metrics = add_metrics_listener(&pipeline);

    let run = start_run(&pipeline);
    assert_eq!(read(&output, kept, Duration::from_secs(60)).len(), kept);
    assert_eq!(get(&format!("http://{metrics}/healthz")).0, 200);
    assert_eq!(get(&format!("http://{metrics}/ready")).0, 200);
    let prometheus = Prometheus::start(&metrics);
    let q = |metric: &str, labels: &str| format!("sum(meshhost_{metric}{{pipeline=\"{name}\",{labels}}})");
    let total = movies.len() as f64 + 1.0;
    prometheus.wait_for(&q("component_received_records_total", "component_id=\"movies\""), total);
    prometheus.wait_for(&q("dead_lettered_records_total", "component_id=\"movies\",stage=\"decode\""), 1.0);
    prometheus.wait_for(&q("component_received_records_total", "component_id=\"recent\""), movies.len() as f64);
    prometheus
        .wait_for(&q("component_discarded_records_total", "component_id=\"recent\""), (movies.len() - kept) as f64);
    prometheus.wait_for(&q("component_sent_records_total", "component_id=\"recent\",port=\"out\""), kept as f64);
    prometheus.wait_for(&q("component_received_records_total", "component_id=\"slim\""), kept as f64);
    prometheus
        .wait_for(&q("component_sent_records_total", "component_id=\"out\",component_kind=\"sink\""), kept as f64);
    prometheus.wait_for(&q("consumer_lag_records", &format!("topic=\"{input}\"")), 0.0);
    prometheus.wait_for(&q("committed_offset", &format!("topic=\"{input}\"")), total);
    let rebalances = prometheus.query("meshhost_rebalances_total");
    assert!(rebalances.is_some_and(|r| r >= 1.0), "the first assignment counts: {rebalances:?}");
    let traps = prometheus.query(&q("processor_traps_total", "component_id=\"recent\""));
    assert!(matches!(traps, None | Some(0.0)), "no trap, so no trap counted: {traps:?}");
    assert!(prometheus.query(&q("processor_call_seconds_total", "component_id=\"recent\"")).is_some_and(|s| s > 0.0));
    assert_clean_exit(&run.stop());
}

#[test]
fn a_broker_that_is_down_is_reported_in_a_few_lines_then_one_clear_error() {
    let dir = PipelineDir::new();
    let pipeline = movies::pipeline(&dir, &unique("down"), "in", FILTER_AND_PROJECTION, "slim", "out", "dlq");
    let nobody = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let (code, _, stderr) = meshhost(&["run", pipeline.to_str().unwrap(), "--bootstrap-servers", &nobody]);
    assert_eq!(code, 1, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "it gives up");
    let lines: Vec<&str> = stderr.lines().collect();
    // librdkafka alone used to print about 200 lines in these 10 s.
    assert!(lines.len() <= 6, "{} lines:\n{stderr}", lines.len());
    assert!(lines.last().unwrap().starts_with(&format!("error: cannot reach Kafka at {nobody}")), "{stderr}");
}

#[test]
fn tap_shows_live_records_of_two_edges_with_their_schemas() {
    let (input, output, dead_letter) = pipeline_topics("tap", 1);
    let dir = PipelineDir::new();
    let name = unique("tap");
    let pipeline = movies::pipeline(&dir, &name, &input, FILTER_AND_PROJECTION, "slim", &output, &dead_letter);
    let listen = add_metrics_listener(&pipeline);
    let run = start_run(&pipeline);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&format!("http://{listen}/ready")).0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let tap = |edge: &str| {
        Command::new(MESHHOST)
            .args(["tap", pipeline.to_str().unwrap(), edge, "--max", "3", "--seconds", "30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (movies_tap, slim_tap) = (tap("movies"), tap("slim"));
    std::thread::sleep(Duration::from_secs(2)); // both taps subscribed
    let movies = movies::movies(40);
    produce(&input, &movies.iter().map(|m| (Some(m.key()), Some(m.avro()))).collect::<Vec<_>>());
    let lines = |child: Child| {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Json>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let (sources, slims) = (lines(movies_tap), lines(slim_tap));
    // An edge that does not exist is named with the ones that do.
    let (code, _, stderr) = meshhost(&["tap", pipeline.to_str().unwrap(), "nope", "--listen", &listen]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no edge \"nope\"; the edges are: movies, recent, recent.out, slim, slim.out"), "{stderr}");
    assert_clean_exit(&run.stop());
    assert_eq!(sources.len(), 3);
    assert_eq!(slims.len(), 3);
    for (line, movie) in sources.iter().zip(&movies) {
        assert_eq!(line["edge"], "movies");
        assert_eq!(line["key"], Json::String(String::from_utf8(movie.key()).unwrap()));
        assert!(line["value"]["country"].is_string() && line["value"]["genre"].is_string(), "{line}");
    }
    let kept: Vec<&movies::Movie> = movies.iter().filter(|m| m.is_recent_us()).collect();
    for (line, movie) in slims.iter().zip(kept) {
        assert_eq!(line["edge"], "slim");
        assert_eq!(line["value"]["name"], Json::String(movie.title.clone()), "{line}");
        assert!(line["value"].get("country").is_none(), "the projection's schema: {line}");
    }
}

#[test]
fn dry_run_prints_every_edge_sink_and_dead_letter_and_commits_nothing() {
    let (input, output, dead_letter) = pipeline_topics("dry", 1);
    let movies = movies::movies(20);
    let mut records: Vec<KeyValue> = movies.iter().map(|m| (Some(m.key()), Some(m.avro()))).collect();
    records.push((Some(b"bad".to_vec()), Some(b"not avro".to_vec())));
    produce(&input, &records);
    let dir = PipelineDir::new();
    let name = unique("dry");
    let pipeline = movies::pipeline(&dir, &name, &input, FILTER_AND_PROJECTION, "slim", &output, &dead_letter);
    let (code, stdout, stderr) =
        meshhost(&["run", pipeline.to_str().unwrap(), "--dry-run", "--from-end", "6", "--bootstrap-servers", broker()]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Json> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last_five = &movies[15..];
    let kept: Vec<&movies::Movie> = last_five.iter().filter(|m| m.is_recent_us()).collect();
    let on = |field: &str, name: &str| lines.iter().filter(|l| l[field] == name).collect::<Vec<_>>();
    let keys = |lines: &[&Json]| lines.iter().map(|l| l["key"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let key_of = |m: &movies::Movie| String::from_utf8(m.key()).unwrap();
    assert_eq!(keys(&on("edge", "movies")), last_five.iter().map(key_of).collect::<Vec<_>>());
    assert_eq!(keys(&on("edge", "recent")), kept.iter().map(|m| key_of(m)).collect::<Vec<_>>());
    let slim = on("edge", "slim");
    assert_eq!(
        slim.iter().map(|l| l["value"]["name"].as_str().unwrap()).collect::<Vec<_>>(),
        kept.iter().map(|m| m.title.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(keys(&on("sink", "out")), kept.iter().map(|m| key_of(m)).collect::<Vec<_>>());
    let dead: Vec<&Json> = lines.iter().filter(|l| l.get("dead_letter").is_some()).collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["dead_letter"]["stage"], "decode");
    assert_eq!(dead[0]["dead_letter"]["offset"], 20);
    assert!(stderr.contains("dry run: 6 records read") && stderr.contains("nothing produced or committed"), "{stderr}");
    assert!(read(&output, 1, Duration::from_secs(2)).is_empty(), "nothing produced");
    assert!(committed_offsets(&format!("meshhost-{name}"), &input).values().all(|o| *o < 0), "nothing committed");
}

#[test]
fn on_a_terminal_run_keeps_a_live_status_line() {
    let (input, output, dead_letter) = pipeline_topics("tty", 1);
    let movies = movies::movies(50);
    produce(&input, &movies.iter().map(|m| (Some(m.key()), Some(m.avro()))).collect::<Vec<_>>());
    let dir = PipelineDir::new();
    let pipeline = movies::pipeline(&dir, &unique("tty"), &input, FILTER_AND_PROJECTION, "slim", &output, &dead_letter);
    // `script` gives the run a terminal; `timeout` sends SIGTERM after 5 s (a clean stop).
    let command = format!(
        "timeout --preserve-status -s TERM 5 {MESHHOST} run {} --bootstrap-servers {}",
        pipeline.display(),
        broker()
    );
    let output = Command::new("script").args(["-qec", &command, "/dev/null"]).output().expect("run script");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("\r\x1b[2K▶ ") && text.contains("records/s in") && text.contains("lag "), "{text}");
    assert!(text.contains("pipeline stopped"), "log lines still come through: {text}");
}
