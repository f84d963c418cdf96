//! Processors written in Python (sdk/python) and JavaScript (sdk/js): the example plugins in
//! examples/ are built with each SDK's build command and run on the broker, end to end.
//!
//! Built components are cached in the cargo target's tmp dir, keyed by a hash of everything
//! that goes into them (SDK, WIT, example sources, tool versions), so a rerun does not rebuild.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use apache_avro::Schema;
use sha2::{Digest, Sha256};

use crate::pipeline::wait_for_commits;
use crate::support::*;

const CUSTOMER_SCHEMA: &str = include_str!("../../examples/python-pii-mask/customer.avsc");
const ALBUM_SCHEMA: &str = include_str!("../../examples/js-enricher/album.avsc");

/// What the enricher declares on both its outputs: the album schema plus `decade`.
const ALBUM_WITH_DECADE_SCHEMA: &str = r#"{
  "type": "record", "name": "Album", "namespace": "music",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "title", "type": "string"},
    {"name": "artist", "type": "string"},
    {"name": "year", "type": ["null", "int"], "default": null},
    {"name": "tracks", "type": {"type": "array", "items": "string"}, "default": []},
    {"name": "decade", "type": "int"}
  ]
}"#;

// --- building the components ----------------------------------------------------------------

#[derive(Clone, Copy)]
enum Lang {
    Python,
    JavaScript,
}

/// `sdk/install-tools.sh`, once per test run (it is quick when everything is there).
fn install_tools() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let status = Command::new(workspace().join("sdk/install-tools.sh")).status().expect("run sdk/install-tools.sh");
        assert!(
            status.success(),
            "sdk/install-tools.sh failed: the Python and JavaScript SDKs' build tools are missing"
        );
    });
}

fn files_in(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| extensions.iter().any(|e| ext == *e)))
        .collect();
    files.sort();
    files
}

/// The component built from `app` (a path relative to the workspace) with its language's SDK,
/// from the cache when its inputs did not change. Builds are serialized: they are heavy.
fn component(lang: Lang, app: &str) -> PathBuf {
    static BUILDS: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    install_tools();
    let ws = workspace();
    let app = ws.join(app);
    let app_dir = app.parent().unwrap();
    let mut inputs = files_in(&ws.join("wit"), &["wit"]);
    inputs.push(ws.join("sdk/install-tools.sh")); // the tool versions
    match lang {
        Lang::Python => {
            inputs.push(ws.join("sdk/python/build.py"));
            inputs.extend(files_in(&ws.join("sdk/python/meshhost_sdk"), &["py"]));
            inputs.extend(files_in(app_dir, &["py"]));
        }
        Lang::JavaScript => {
            inputs.extend(["sdk/js/meshhost.js", "sdk/js/build.mjs", "sdk/js/package-lock.json"].map(|f| ws.join(f)));
            inputs.extend(files_in(app_dir, &["js", "mjs"]));
        }
    }
    let mut hash = Sha256::new();
    hash.update(app.strip_prefix(&ws).unwrap().to_string_lossy().as_bytes());
    for input in &inputs {
        hash.update(input.strip_prefix(&ws).unwrap().to_string_lossy().as_bytes());
        hash.update(std::fs::read(input).unwrap_or_else(|e| panic!("read {}: {e}", input.display())));
    }
    let digest: String = hash.finalize().iter().take(10).map(|b| format!("{b:02x}")).collect();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lang-plugins");
    std::fs::create_dir_all(&cache).unwrap();
    let stem = app.file_stem().unwrap().to_string_lossy().into_owned();
    let built = cache.join(format!("{stem}-{digest}.wasm"));
    if built.exists() {
        return built;
    }

    let partial = cache.join(format!("{stem}-{digest}.wasm.part"));
    let mut command = match lang {
        Lang::Python => {
            let mut c = Command::new("python3");
            c.arg(ws.join("sdk/python/build.py"));
            c
        }
        Lang::JavaScript => {
            let mut c = Command::new("node");
            c.arg(ws.join("sdk/js/build.mjs"));
            c
        }
    };
    let started = Instant::now();
    let output =
        command.arg(&app).arg("-o").arg(&partial).arg("-q").current_dir(&ws).output().expect("run the SDK build");
    assert!(
        output.status.success(),
        "building {} failed:\n{}{}",
        app.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &built).unwrap();
    // Older builds of the same app are stale now.
    for entry in std::fs::read_dir(&cache).unwrap().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let stale =
            file.strip_prefix(&format!("{stem}-")).and_then(|rest| rest.strip_suffix(".wasm")).is_some_and(|hash| {
                hash.len() == digest.len() && hash.bytes().all(|b| b.is_ascii_hexdigit()) && hash != digest
            });
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let size = std::fs::metadata(&built).unwrap().len();
    eprintln!("built {} ({:.1} MB) in {:.1} s", built.display(), size as f64 / 1e6, started.elapsed().as_secs_f64());
    built
}

// --- records --------------------------------------------------------------------------------

fn schema(text: &str) -> Schema {
    Schema::parse_str(text).unwrap()
}

fn union(index: u32, value: Value) -> Value {
    Value::Union(index, Box::new(value))
}

fn string(s: &str) -> Value {
    Value::String(s.to_string())
}

fn decode(schema: &Schema, bytes: &[u8]) -> Value {
    let mut reader = bytes;
    let value = apache_avro::from_avro_datum(schema, &mut reader, None).expect("output decodes with its schema");
    assert!(reader.is_empty(), "trailing bytes after the datum");
    value
}

/// Records by key; a tombstone is `None`.
fn by_key(records: &[TestRecord], schema: &Schema) -> BTreeMap<Vec<u8>, Option<Value>> {
    let mut out = BTreeMap::new();
    for record in records {
        let key = record.key.clone().expect("output keeps the key");
        let previous = out.insert(key.clone(), record.value.as_deref().map(|v| decode(schema, v)));
        assert!(previous.is_none(), "key {} appears twice", String::from_utf8_lossy(&key));
    }
    out
}

/// Assert equal record sets, naming the keys that differ and showing the first difference.
fn assert_same(what: &str, actual: &BTreeMap<Vec<u8>, Option<Value>>, expected: &BTreeMap<Vec<u8>, Option<Value>>) {
    let name = |k: &Vec<u8>| String::from_utf8_lossy(k).into_owned();
    let missing: Vec<String> = expected.keys().filter(|k| !actual.contains_key(*k)).map(name).collect();
    let extra: Vec<String> = actual.keys().filter(|k| !expected.contains_key(*k)).map(name).collect();
    let different: Vec<&Vec<u8>> =
        expected.iter().filter(|(k, v)| actual.get(*k).is_some_and(|a| a != *v)).map(|(k, _)| k).collect();
    let first = different
        .first()
        .map(|k| format!("\n{}: expected {:?}\n actual {:?}", name(k), expected[*k], actual[*k]))
        .unwrap_or_default();
    assert!(
        missing.is_empty() && extra.is_empty() && different.is_empty(),
        "{what}: missing {missing:?}, unexpected {extra:?}, different values {:?}{first}",
        different.iter().map(|k| name(k)).collect::<Vec<_>>()
    );
}

fn create_topics(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|name| {
            let topic = unique(name);
            create_topic(&topic, if name.ends_with("dlq") { 1 } else { 3 });
            topic
        })
        .collect()
}

/// Dead letters by key, checking what every dead letter carries.
fn dead_letters(records: &[TestRecord], processor: &str, source: &str) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    for record in records {
        assert_eq!(record.header("meshhost.stage").as_deref(), Some("process"), "{record:?}");
        assert_eq!(record.header("meshhost.processor").as_deref(), Some(processor), "{record:?}");
        assert_eq!(record.header("meshhost.source.topic").as_deref(), Some(source), "{record:?}");
        assert_eq!(record.header("origin").as_deref(), Some("test"), "original headers kept");
        out.insert(record.key.clone().unwrap(), record.header("meshhost.error").expect("meshhost.error"));
    }
    out
}

// --- Python: pii-mask -----------------------------------------------------------------------

#[derive(Clone)]
struct Customer {
    id: i64,
    name: String,
    email: String,
    contact: Contact,
    city: String,
    backup_email: Option<String>,
    notes: Vec<String>,
}

#[derive(Clone)]
enum Contact {
    None,
    Email(String),
    Phone(i64),
}

fn customers(count: i64) -> Vec<Customer> {
    (0..count)
        .map(|id| Customer {
            id,
            name: match id % 3 {
                0 => format!("Zoë Ñandú {id}"),
                1 => format!("顧客 {id}"),
                _ => format!("Customer {id}"),
            },
            email: match id % 4 {
                0 => format!("User.{id}@Example.COM"),
                1 => format!("  user{id}@example.org "),
                2 => format!("u{id}+tag@sub.example.net"),
                _ => format!("not an address {id}"), // configured: hashed all the same
            },
            contact: match id % 5 {
                0 => Contact::None,
                3 => Contact::Phone(33_600_000_000 + id),
                _ => Contact::Email(format!("contact{id}@work.example")),
            },
            city: format!("City {}", id % 7),
            backup_email: (id % 2 == 0).then(|| format!("Backup{id}@Example.org")),
            notes: (0..id % 3)
                .map(|n| if n == 0 { format!("n{id}@notes.example") } else { format!("call at {id} or x@y.z") })
                .collect(),
        })
        .collect()
}

impl Customer {
    fn key(&self) -> Vec<u8> {
        format!("customer-{}", self.id).into_bytes()
    }

    fn value(&self) -> Value {
        Value::Record(vec![
            ("id".into(), Value::Long(self.id)),
            ("name".into(), string(&self.name)),
            ("email".into(), string(&self.email)),
            (
                "contact".into(),
                match &self.contact {
                    Contact::None => union(0, Value::Null),
                    Contact::Email(e) => union(1, string(e)),
                    Contact::Phone(p) => union(2, Value::Long(*p)),
                },
            ),
            (
                "profile".into(),
                Value::Record(vec![
                    ("city".into(), string(&self.city)),
                    (
                        "backup_email".into(),
                        match &self.backup_email {
                            None => union(0, Value::Null),
                            Some(e) => union(1, string(e)),
                        },
                    ),
                ]),
            ),
            ("notes".into(), Value::Array(self.notes.iter().map(|n| string(n)).collect())),
        ])
    }

    fn avro(&self) -> Vec<u8> {
        apache_avro::to_avro_datum(&schema(CUSTOMER_SCHEMA), self.value()).unwrap()
    }
}

/// pii-mask's hash with `normalize: true`.
fn hashed(salt: &str, address: &str) -> String {
    let digest = Sha256::digest(format!("{salt}{}", address.trim().to_lowercase()).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// pii-mask's e-mail test: `^[^@\s]+@[^@\s]+\.[^@\s]+$` on the trimmed text.
fn looks_like_email(text: &str) -> bool {
    let text = text.trim();
    if text.chars().any(char::is_whitespace) {
        return false;
    }
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.contains('@') && domain.len() >= 3 && domain[1..domain.len() - 1].contains('.')
        }
        None => false,
    }
}

const SALT: &str = "pepper:";

#[test]
fn python_pii_mask_hashes_addresses_and_dead_letters_non_strings() {
    let plugin = component(Lang::Python, "examples/python-pii-mask/pii_mask.py");
    let topics = create_topics(&["pii-in", "pii-masked", "pii-auto", "pii-dlq"]);
    let (input, masked_topic, auto_topic, dlq) = (&topics[0], &topics[1], &topics[2], &topics[3]);
    let customers = customers(60);
    let mut records: Vec<KeyValue> = customers.iter().map(|c| (Some(c.key()), Some(c.avro()))).collect();
    records.push((Some(b"customer-gone".to_vec()), None)); // a tombstone: forwarded as is
    produce(input, &records);

    let dir = PipelineDir::new();
    dir.write("customer.avsc", CUSTOMER_SCHEMA);
    let name = unique("pii");
    let pipeline = dir.write(
        "pipeline.yaml",
        &format!(
            r#"name: {name}
sources:
  customers: {{topic: {input}, format: avro, schema: customer.avsc}}
processors:
  mask:
    uses: {plugin}
    inputs: [customers]
    with:
      fields: [email, contact, profile.backup_email]
      salt: "{SALT}"
  auto:
    uses: {plugin}
    inputs: [customers]
sinks:
  masked: {{topic: {masked_topic}, format: avro, inputs: [mask]}}
  auto: {{topic: {auto_topic}, format: avro, inputs: [auto]}}
dead_letter:
  topic: {dlq}
"#,
            plugin = plugin.display()
        ),
    );

    // mask: the configured fields hashed, whatever they hold; a phone number in `contact` fails.
    let mut expected_masked: BTreeMap<Vec<u8>, Option<Value>> = customers
        .iter()
        .filter(|c| !matches!(c.contact, Contact::Phone(_)))
        .map(|c| {
            let mut m = c.clone();
            m.email = hashed(SALT, &c.email);
            if let Contact::Email(e) = &c.contact {
                m.contact = Contact::Email(hashed(SALT, e));
            }
            m.backup_email = c.backup_email.as_ref().map(|e| hashed(SALT, e));
            (c.key(), Some(m.value()))
        })
        .collect();
    expected_masked.insert(b"customer-gone".to_vec(), None);
    // auto: every string that looks like an address hashed (no salt), at any depth.
    let auto_hash = |s: &String| if looks_like_email(s) { hashed("", s) } else { s.clone() };
    let mut expected_auto: BTreeMap<Vec<u8>, Option<Value>> = customers
        .iter()
        .map(|c| {
            let mut m = c.clone();
            m.name = auto_hash(&c.name);
            m.email = auto_hash(&c.email);
            if let Contact::Email(e) = &c.contact {
                m.contact = Contact::Email(auto_hash(e));
            }
            m.backup_email = c.backup_email.as_ref().map(auto_hash);
            m.notes = c.notes.iter().map(auto_hash).collect();
            (c.key(), Some(m.value()))
        })
        .collect();
    expected_auto.insert(b"customer-gone".to_vec(), None);
    let phones: BTreeMap<Vec<u8>, i64> = customers
        .iter()
        .filter_map(|c| if let Contact::Phone(p) = c.contact { Some((c.key(), p)) } else { None })
        .collect();
    assert!(!phones.is_empty() && expected_auto.values().flatten().count() == customers.len());

    let run = start_run(&pipeline);
    read(masked_topic, expected_masked.len(), Duration::from_secs(120));
    read(auto_topic, expected_auto.len(), Duration::from_secs(60));
    wait_for_commits(&format!("meshhost-{name}"), input);
    assert_clean_exit(&run.stop());

    let schema = schema(CUSTOMER_SCHEMA);
    assert_same(
        "mask",
        &by_key(&read_all(masked_topic, expected_masked.len(), Duration::from_secs(30)), &schema),
        &expected_masked,
    );
    assert_same(
        "auto",
        &by_key(&read_all(auto_topic, expected_auto.len(), Duration::from_secs(30)), &schema),
        &expected_auto,
    );

    let dead = read_all(dlq, phones.len(), Duration::from_secs(30));
    let dead = dead_letters(&dead, "mask", input);
    assert_eq!(
        dead.keys().collect::<Vec<_>>(),
        phones.keys().collect::<Vec<_>>(),
        "exactly the phone contacts are dead letters"
    );
    for (key, error) in &dead {
        assert_eq!(
            error,
            &format!("pii-mask: field 'contact' is not a string (got int {}); cannot hash it", phones[key])
        );
    }
}

// --- JavaScript: enricher -------------------------------------------------------------------

#[derive(Clone)]
struct Album {
    id: i64,
    title: String,
    artist: String,
    year: Option<i32>,
    tracks: Vec<String>,
}

fn albums(count: i64) -> Vec<Album> {
    (0..count)
        .map(|id| Album {
            id,
            title: match id % 3 {
                0 => format!("Rêverie n°{id}"),
                1 => format!("アルバム {id} 🎵"),
                _ => format!("Album {id}"),
            },
            artist: format!("Artist {}", id % 9),
            year: (id % 6 != 4).then_some(1950 + (id * 7 % 75) as i32),
            tracks: (0..id % 4).map(|t| format!("track {t}")).collect(),
        })
        .collect()
}

impl Album {
    fn key(&self) -> Vec<u8> {
        format!("album-{}", self.id).into_bytes()
    }

    fn fields(&self) -> Vec<(String, Value)> {
        vec![
            ("id".into(), Value::Long(self.id)),
            ("title".into(), string(&self.title)),
            ("artist".into(), string(&self.artist)),
            (
                "year".into(),
                match self.year {
                    None => union(0, Value::Null),
                    Some(y) => union(1, Value::Int(y)),
                },
            ),
            ("tracks".into(), Value::Array(self.tracks.iter().map(|t| string(t)).collect())),
        ]
    }

    fn avro(&self) -> Vec<u8> {
        apache_avro::to_avro_datum(&schema(ALBUM_SCHEMA), Value::Record(self.fields())).unwrap()
    }

    fn with_decade(&self) -> Value {
        let mut fields = self.fields();
        fields.push(("decade".into(), Value::Int(self.year.unwrap() / 10 * 10)));
        Value::Record(fields)
    }
}

const THRESHOLD: i32 = 1990;

#[test]
fn javascript_enricher_adds_the_decade_and_routes_to_two_outputs() {
    let plugin = component(Lang::JavaScript, "examples/js-enricher/enricher.js");
    let topics = create_topics(&["enrich-in", "enrich-classic", "enrich-modern", "enrich-dlq"]);
    let (input, classic_topic, modern_topic, dlq) = (&topics[0], &topics[1], &topics[2], &topics[3]);
    let albums = albums(90);
    let mut records: Vec<KeyValue> = albums.iter().map(|a| (Some(a.key()), Some(a.avro()))).collect();
    records.push((Some(b"album-gone".to_vec()), None)); // a tombstone: the enricher sends it to both outputs
    produce(input, &records);

    let dir = PipelineDir::new();
    dir.write("album.avsc", ALBUM_SCHEMA);
    let name = unique("enrich");
    let pipeline = dir.write(
        "pipeline.yaml",
        &format!(
            r#"name: {name}
sources:
  albums: {{topic: {input}, format: avro, schema: album.avsc}}
processors:
  decades:
    uses: {plugin}
    inputs: [albums]
    with: {{threshold: {THRESHOLD}}}
sinks:
  classic: {{topic: {classic_topic}, format: avro, inputs: [decades.classic]}}
  modern: {{topic: {modern_topic}, format: avro, inputs: [decades.modern]}}
dead_letter:
  topic: {dlq}
"#,
            plugin = plugin.display()
        ),
    );

    let expected = |classic: bool| -> BTreeMap<Vec<u8>, Option<Value>> {
        let mut map: BTreeMap<_, _> = albums
            .iter()
            .filter(|a| a.year.is_some_and(|y| (y < THRESHOLD) == classic))
            .map(|a| (a.key(), Some(a.with_decade())))
            .collect();
        map.insert(b"album-gone".to_vec(), None);
        map
    };
    let (expected_classic, expected_modern) = (expected(true), expected(false));
    let yearless: Vec<Vec<u8>> = albums.iter().filter(|a| a.year.is_none()).map(Album::key).collect();
    assert!(expected_classic.len() > 5 && expected_modern.len() > 5 && !yearless.is_empty());

    let run = start_run(&pipeline);
    read(classic_topic, expected_classic.len(), Duration::from_secs(120));
    read(modern_topic, expected_modern.len(), Duration::from_secs(60));
    wait_for_commits(&format!("meshhost-{name}"), input);
    assert_clean_exit(&run.stop());

    let schema = schema(ALBUM_WITH_DECADE_SCHEMA);
    let classic = read_all(classic_topic, expected_classic.len(), Duration::from_secs(30));
    assert_same("classic", &by_key(&classic, &schema), &expected_classic);
    let modern = read_all(modern_topic, expected_modern.len(), Duration::from_secs(30));
    assert_same("modern", &by_key(&modern, &schema), &expected_modern);
    // Keys keep their partition on both outputs.
    let source = read(input, records.len(), Duration::from_secs(30));
    for record in classic.iter().chain(&modern) {
        assert_eq!(record.partition, source.iter().find(|r| r.key == record.key).unwrap().partition);
    }

    let dead = read_all(dlq, yearless.len(), Duration::from_secs(30));
    let dead = dead_letters(&dead, "decades", input);
    assert_eq!(
        dead.keys().cloned().collect::<Vec<_>>(),
        {
            let mut k = yearless.clone();
            k.sort();
            k
        },
        "exactly the albums without a year"
    );
    for error in dead.values() {
        assert_eq!(error, "enricher: record has no year (null), so no decade");
    }
    for record in &read_all(dlq, yearless.len(), Duration::from_secs(5)) {
        let album = albums.iter().find(|a| Some(a.key()) == record.key).unwrap();
        assert_eq!(record.value.as_deref(), Some(album.avro().as_slice()), "the dead letter keeps the original bytes");
    }
}

// --- configuration errors, offline ----------------------------------------------------------

#[test]
fn python_and_javascript_config_errors_are_reported_with_their_paths() {
    let pii = component(Lang::Python, "examples/python-pii-mask/pii_mask.py");
    let enricher = component(Lang::JavaScript, "examples/js-enricher/enricher.js");
    let dir = PipelineDir::new();
    dir.write("customer.avsc", CUSTOMER_SCHEMA);
    dir.write("album.avsc", ALBUM_SCHEMA);
    let pipeline = dir.write(
        "pipeline.yaml",
        &format!(
            r#"name: check
sources:
  customers: {{topic: c, format: avro, schema: customer.avsc}}
  albums: {{topic: a, format: avro, schema: album.avsc}}
processors:
  mask:
    uses: {pii}
    inputs: [customers]
    with: {{fields: [email, id, profile.mail], salt: 3}}
  decades:
    uses: {enricher}
    inputs: [albums]
    with: {{field: yr, target: title, threshold: soon}}
sinks:
  out: {{topic: o, format: avro, inputs: [mask]}}
  classic: {{topic: c2, format: avro, inputs: [decades.classic]}}
"#,
            pii = pii.display(),
            enricher = enricher.display()
        ),
    );
    let (code, _, stderr) = validate(&pipeline);
    assert_eq!(code, Some(2), "{stderr}");
    for line in [
        "processors.mask.with.salt: must be a string",
        "processors.mask.with.fields[1]: field 'id' is long, not a string",
        "processors.mask.with.fields[2]: no field 'mail' in profile (fields: city, backup_email)",
        "processors.decades.with.field: no field \"yr\" in the input (fields: id, title, artist, year, tracks)",
        "processors.decades.with.target: the input already has a field \"title\"",
        "processors.decades.with.threshold: must be an integer year",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
}

// --- the SDKs' own tests, natively ----------------------------------------------------------

fn run_native(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn python_sdk_and_example_unit_tests_pass() {
    run_native("python3", &["-m", "unittest", "discover", "-s", "sdk/python/tests"]);
    run_native("python3", &["-m", "unittest", "discover", "-s", "examples/python-pii-mask"]);
    run_native("python3", &["-m", "unittest", "discover", "-s", "examples/python-counter"]);
}

#[test]
fn javascript_sdk_and_example_unit_tests_pass() {
    run_native("node", &["--test", "sdk/js/test/"]);
    run_native("node", &["--import", "./sdk/js/register.mjs", "--test", "examples/js-enricher/"]);
    run_native("node", &["--import", "./sdk/js/register.mjs", "--test", "examples/js-counter/"]);
}

// --- Python: every Avro type through marshal ------------------------------------------------

const EVERY_TYPE_SCHEMA: &str = r#"{"type": "record", "name": "Every", "namespace": "test", "fields": [
  {"name": "id", "type": "long"},
  {"name": "flag", "type": "boolean"},
  {"name": "count", "type": "int"},
  {"name": "ratio", "type": "float"},
  {"name": "score", "type": "double"},
  {"name": "name", "type": "string"},
  {"name": "raw", "type": "bytes"},
  {"name": "tag", "type": {"type": "fixed", "name": "Tag", "size": 4}},
  {"name": "mood", "type": {"type": "enum", "name": "Mood", "symbols": ["HAPPY", "SAD"]}},
  {"name": "counts", "type": {"type": "map", "values": "long"}},
  {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
    {"name": "name", "type": "string"}, {"name": "qty", "type": "int"}]}}},
  {"name": "choice", "type": ["null", "string", "long"]},
  {"name": "owner", "type": {"type": "record", "name": "Owner", "fields": [
    {"name": "name", "type": "string"}, {"name": "since", "type": ["null", "int"]}]}}
]}"#;

/// What `tests/apps/python-every-type` declares: the input's fields and `note` (default "none").
fn every_type_output_schema() -> String {
    EVERY_TYPE_SCHEMA
        .replace(r#""name": "Every""#, r#""name": "Changed""#)
        .replace("\n]}", r#", {"name": "note", "type": "string", "default": "none"}]}"#)
}

/// Input record `i` of the every-type test, with `name`; and what the plugin makes of it.
fn every_type(i: i64, name: &str) -> (Value, Value) {
    let record =
        |fields: Vec<(&str, Value)>| Value::Record(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    let item = |name: &str, qty: i32| record(vec![("name", string(name)), ("qty", Value::Int(qty))]);
    let choice = match i % 3 {
        0 => union(0, Value::Null),
        1 => union(1, string(&format!("c{i}"))),
        _ => union(2, Value::Long((1 << 35) + i)),
    };
    let since = if i % 2 == 0 { union(1, Value::Int(1990 + i as i32)) } else { union(0, Value::Null) };
    let (raw, tag) = (vec![0, 255, i as u8, 128], vec![i as u8, 1, 2, 3]);
    let mood = |happy: bool| if happy { Value::Enum(0, "HAPPY".into()) } else { Value::Enum(1, "SAD".into()) };
    let input = record(vec![
        ("id", Value::Long(i - 5)),
        ("flag", Value::Boolean(i % 2 == 0)),
        ("count", Value::Int(i as i32 * 1000 - 7)),
        ("ratio", Value::Float(i as f32 * 0.1)),
        ("score", Value::Double(i as f64 * 1.5)),
        ("name", string(name)),
        ("raw", Value::Bytes(raw.clone())),
        ("tag", Value::Fixed(4, tag.clone())),
        ("mood", mood(i % 2 == 1)),
        ("counts", Value::Map([("a".to_string(), Value::Long(i)), ("b".to_string(), Value::Long(-(1 << 40)))].into())),
        ("items", Value::Array(vec![item("first", 1), item(&format!("é{i}"), i as i32)])),
        ("choice", choice.clone()),
        ("owner", record(vec![("name", string(&format!("o{i}"))), ("since", since.clone())])),
    ]);
    let output = record(vec![
        ("id", Value::Long(i - 5 + (1 << 40))),
        ("flag", Value::Boolean(i % 2 != 0)),
        ("count", Value::Int(-(i as i32 * 1000 - 7))),
        ("ratio", Value::Float(i as f32 * 0.1)),
        ("score", Value::Double(i as f64 * 1.5 / 4.0)),
        ("name", string(&name.to_uppercase())),
        ("raw", Value::Bytes(raw.iter().rev().copied().collect())),
        ("tag", Value::Fixed(4, tag.iter().map(|b| b ^ 0xff).collect())),
        ("mood", mood(i % 2 == 0)),
        (
            "counts",
            Value::Map([("a".to_string(), Value::Long(2 * i)), ("b".to_string(), Value::Long(-(1 << 41)))].into()),
        ),
        ("items", Value::Array(vec![item(&format!("é{i}"), i as i32), item("first", 1)])),
        ("choice", choice),
        (
            "owner",
            record(vec![
                ("name", string(&format!("o{i}"))),
                ("since", if i % 2 == 0 { since } else { union(1, Value::Int(1999)) }),
            ]),
        ),
        ("note", string("none")),
    ]);
    (input, output)
}

#[test]
fn python_plugins_get_and_return_every_avro_type_as_plain_python() {
    let plugin = component(Lang::Python, "tests/apps/python-every-type/every_type.py");
    let topics = create_topics(&["every-in", "every-out", "every-dlq"]);
    let (input, output, dlq) = (&topics[0], &topics[1], &topics[2]);
    let in_schema = schema(EVERY_TYPE_SCHEMA);
    let out_schema = schema(&every_type_output_schema());
    let mut records = Vec::new();
    let mut expected = BTreeMap::new();
    for i in 0..40 {
        let name = match i {
            7 => "bad-type".to_string(),
            9 => "not-plain".to_string(),
            _ => format!("näme {i}"),
        };
        let (value, out) = every_type(i, &name);
        let key = format!("every-{i}").into_bytes();
        records.push((Some(key.clone()), Some(apache_avro::to_avro_datum(&in_schema, value).unwrap())));
        if i != 7 && i != 9 {
            expected.insert(key, Some(out));
        }
    }
    produce(input, &records);

    let dir = PipelineDir::new();
    dir.write("every.avsc", EVERY_TYPE_SCHEMA);
    let name = unique("every");
    let pipeline = dir.write(
        "pipeline.yaml",
        &format!(
            r#"name: {name}
sources:
  every: {{topic: {input}, format: avro, schema: every.avsc}}
processors:
  change:
    uses: {plugin}
    inputs: [every]
sinks:
  out: {{topic: {output}, format: avro, inputs: [change]}}
dead_letter:
  topic: {dlq}
"#,
            plugin = plugin.display()
        ),
    );
    let run = start_run(&pipeline);
    read(output, expected.len(), Duration::from_secs(120));
    wait_for_commits(&format!("meshhost-{name}"), input);
    assert_clean_exit(&run.stop());
    assert_same("changed", &by_key(&read_all(output, expected.len(), Duration::from_secs(30)), &out_schema), &expected);

    let dead: BTreeMap<Vec<u8>, String> = read_all(dlq, 2, Duration::from_secs(30))
        .iter()
        .map(|r| (r.key.clone().unwrap(), r.header("meshhost.error").expect("meshhost.error")))
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(
        dead[&b"every-7".to_vec()],
        r#"output on "out" does not match its declared schema: does not fit the schema: field "count": expected int, found "many""#
    );
    assert!(
        dead[&b"every-9".to_vec()].starts_with(
            "the emitted value is not plain data (dicts, lists, str, bytes, int, float, bool, None): {'id': 4, "
        ),
        "{dead:?}"
    );
}
