//! Avro's Parsing Canonical Form and the CRC-64-AVRO (Rabin) fingerprint (Avro 1.11,
//! "Parsing Canonical Form for Schemas" and "Schema Fingerprints").
//!
//! The canonical form keeps what decides how datums are encoded and nothing else: primitives
//! are bare names (PRIMITIVES), names are full names (FULLNAMES), only `name`, `type`,
//! `fields`, `symbols`, `items`, `values` and `size` remain, in that order (STRIP, ORDER),
//! strings are written unescaped (STRINGS), integers plainly (INTEGERS) and nothing is
//! between the tokens (WHITESPACE). Each named type is written in full at its first use and by
//! name afterwards. Logical types are their underlying types; `error` is `record`.

use std::collections::HashSet;

use super::schema::{AvroType, NamedTypes, Schema};

/// `EMPTY` of the spec: the fingerprint of no bytes.
const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

/// The spec's 256-entry table, computed at compile time.
const TABLE: [u64; 256] = rabin_table();

const fn rabin_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
}

/// The CRC-64-AVRO (64-bit Rabin) fingerprint of `bytes`, as the Avro spec defines it. The
/// fingerprint of a schema is that of its canonical form ([`Schema::fingerprint`]); Avro's
/// single-object encoding and schema registries write it little-endian.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    let mut fp = EMPTY;
    for &b in bytes {
        fp = (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}

impl Schema {
    /// The schema's Parsing Canonical Form (see the [Avro spec]): the JSON text two schemas
    /// share exactly when they encode datums the same way, with docs, aliases, defaults,
    /// logical types and other attributes stripped.
    ///
    /// [Avro spec]: https://avro.apache.org/docs/1.11.1/specification/#parsing-canonical-form-for-schemas
    pub fn canonical_form(&self) -> String {
        self.canonical_form_of(&self.root)
    }

    /// The canonical form of `ty` as the root of a schema with this schema's named types: the
    /// canonical form of the schema [`Schema::from_root`] would make of it.
    pub fn canonical_form_of(&self, ty: &AvroType) -> String {
        let mut writer =
            Canonical { named: Some(&self.named), written: HashSet::new(), shallow: false, out: String::new() };
        writer.write(ty, true);
        writer.out
    }

    /// The CRC-64-AVRO (Rabin) fingerprint of the canonical form: the spec's 64-bit schema
    /// fingerprint.
    pub fn fingerprint(&self) -> u64 {
        crc64_avro(self.canonical_form().as_bytes())
    }

    /// Whether the two schemas are the same for datums: their canonical forms are equal. Docs,
    /// aliases, defaults, logical types and other attributes may differ, and the JSON may
    /// spell the same schema differently (short or full names, `{"type": "int"}` or `"int"`).
    pub fn same_as(&self, other: &Schema) -> bool {
        self.canonical_form() == other.canonical_form()
    }

    /// The schema's JSON as this crate writes it, without docs and aliases: two schemas with
    /// the same meaning form read and write data alike — the same encoding *and* the same
    /// defaults, logical types and other attributes, which the canonical form strips (a
    /// `decimal` of scale 2 and one of scale 4 share a canonical form, not a meaning).
    pub fn meaning_form(&self) -> String {
        fn strip_docs(json: &mut serde_json::Value) {
            match json {
                serde_json::Value::Object(map) => {
                    map.remove("doc");
                    map.remove("aliases");
                    map.values_mut().for_each(strip_docs);
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(strip_docs),
                _ => {}
            }
        }
        let mut json = self.to_json_value();
        strip_docs(&mut json);
        json.to_string()
    }

    /// Whether the two schemas have the same [meaning form](Schema::meaning_form).
    pub fn same_meaning(&self, other: &Schema) -> bool {
        self.meaning_form() == other.meaning_form()
    }
}

/// The canonical form of a named type definition with every named type it uses written by
/// name, so that two definitions compare without the schemas around them.
pub(crate) fn shape(def: &AvroType) -> String {
    let mut writer = Canonical { named: None, written: HashSet::new(), shallow: true, out: String::new() };
    writer.write(def, true);
    writer.out
}

/// Writes canonical form.
struct Canonical<'a> {
    /// Where refs are looked up; `None` writes refs as names.
    named: Option<&'a NamedTypes>,
    written: HashSet<String>,
    /// Write named types below the top one by name.
    shallow: bool,
    out: String,
}

impl Canonical<'_> {
    fn write(&mut self, ty: &AvroType, top: bool) {
        match ty {
            AvroType::Null => self.string("null"),
            AvroType::Boolean => self.string("boolean"),
            AvroType::Int => self.string("int"),
            AvroType::Long => self.string("long"),
            AvroType::Float => self.string("float"),
            AvroType::Double => self.string("double"),
            AvroType::Bytes => self.string("bytes"),
            AvroType::String => self.string("string"),
            AvroType::Record(r) => {
                if !self.define(&r.name, top) {
                    return;
                }
                self.out.push_str(",\"type\":\"record\",\"fields\":[");
                for (i, f) in r.fields.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.out.push_str("{\"name\":");
                    self.string(&f.name);
                    self.out.push_str(",\"type\":");
                    self.write(&f.ty, false);
                    self.out.push('}');
                }
                self.out.push_str("]}");
            }
            AvroType::Enum(e) => {
                if !self.define(&e.name, top) {
                    return;
                }
                self.out.push_str(",\"type\":\"enum\",\"symbols\":[");
                for (i, symbol) in e.symbols.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.string(symbol);
                }
                self.out.push_str("]}");
            }
            AvroType::Fixed(f) => {
                if !self.define(&f.name, top) {
                    return;
                }
                self.out.push_str(",\"type\":\"fixed\",\"size\":");
                self.out.push_str(&f.size.to_string());
                self.out.push('}');
            }
            AvroType::Array(items) => {
                self.out.push_str("{\"type\":\"array\",\"items\":");
                self.write(items, false);
                self.out.push('}');
            }
            AvroType::Map(values) => {
                self.out.push_str("{\"type\":\"map\",\"values\":");
                self.write(values, false);
                self.out.push('}');
            }
            AvroType::Union(branches) => {
                self.out.push('[');
                for (i, b) in branches.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.write(b, false);
                }
                self.out.push(']');
            }
            AvroType::Ref(name) => match self.named.and_then(|named| named.get(name)) {
                Some(def) if !self.written.contains(name) => self.write(def, top),
                _ => self.string(name),
            },
            AvroType::Logical { base, .. } => self.write(base, top),
        }
    }

    /// Starts the definition of named type `name` (`{"name":"..."`) and returns true, or
    /// writes its name and returns false when it is not to be written in full here.
    fn define(&mut self, name: &str, top: bool) -> bool {
        if (self.shallow && !top) || !self.written.insert(name.to_string()) {
            self.string(name);
            return false;
        }
        self.out.push_str("{\"name\":");
        self.string(name);
        true
    }

    /// A JSON string, escaped only where JSON requires it (STRINGS).
    fn string(&mut self, s: &str) {
        if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
            self.out.push('"');
            self.out.push_str(s);
            self.out.push('"');
        } else {
            self.out.push_str(&serde_json::Value::String(s.to_string()).to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::rabin::Rabin;
    use serde_json::Value as Json;

    /// The `.avsc` files of the demos and examples.
    const AVSC: &[(&str, &str)] = &[
        ("demo/movie.avsc", include_str!("../../../demo/movie.avsc")),
        ("demo/join/movie.avsc", include_str!("../../../demo/join/movie.avsc")),
        ("demo/join/talent.avsc", include_str!("../../../demo/join/talent.avsc")),
        ("examples/js-enricher/album.avsc", include_str!("../../../examples/js-enricher/album.avsc")),
        ("examples/python-pii-mask/customer.avsc", include_str!("../../../examples/python-pii-mask/customer.avsc")),
    ];

    /// The schema JSON written inline in the repository's Rust sources (sdk, plugins, host,
    /// tests/all), each with the file and line it came from; some are invalid on purpose.
    const INLINE: &str = include_str!("../tests/data/repo-schemas.json");

    /// apache-avro 0.21 keeps `precision`, `scale` and `order` in the canonical form, and
    /// writes a logical type over a primitive as `{"type":"long"}` rather than `"long"`; the
    /// spec strips them (STRIP) and keeps primitives bare (PRIMITIVES). So the oracle gets the
    /// schema without those attributes, which per the spec does not change its canonical form.
    fn without_logical(json: &Json) -> Json {
        match json {
            Json::Object(obj) => Json::Object(
                obj.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "logicalType" | "precision" | "scale" | "order"))
                    .map(|(k, v)| (k.clone(), without_logical(v)))
                    .collect(),
            ),
            Json::Array(items) => Json::Array(items.iter().map(without_logical).collect()),
            other => other.clone(),
        }
    }

    /// apache-avro's canonical form and Rabin fingerprint, when it parses the schema.
    fn oracle(text: &str) -> Option<(String, u64)> {
        let json: Json = serde_json::from_str(text).ok()?;
        let stripped = without_logical(&json).to_string();
        let schema = apache_avro::Schema::parse_str(&stripped).ok()?;
        let bytes = schema.fingerprint::<Rabin>().bytes;
        let fingerprint = u64::from_le_bytes(bytes.try_into().unwrap());
        Some((schema.canonical_form(), fingerprint))
    }

    /// Checks our canonical form and fingerprint against apache-avro's; returns whether both
    /// parsers took the schema.
    fn agrees(from: &str, text: &str) -> bool {
        let Ok(ours) = Schema::parse(text) else {
            return false;
        };
        let Some((canonical, fingerprint)) = oracle(text) else {
            return false;
        };
        assert_eq!(ours.canonical_form(), canonical, "{from}: {text}");
        assert_eq!(ours.fingerprint(), fingerprint, "{from}: {text}");
        // The canonical form is itself a schema with the same canonical form, unless it has a
        // null-namespace type inside a namespaced one: without "namespace": "" (stripped), that
        // type's short name is read in the enclosing namespace.
        let (mut qualified, mut plain) = (false, false);
        for (name, _) in ours.named_types() {
            *(if name.contains('.') { &mut qualified } else { &mut plain }) = true;
        }
        if !(qualified && plain) {
            let again = Schema::parse(&canonical).unwrap_or_else(|e| panic!("{from}: {e}"));
            assert_eq!(again.canonical_form(), canonical, "{from}");
            assert!(again.same_as(&ours), "{from}");
        }
        // So is what we write back.
        assert!(Schema::parse(&ours.to_json()).unwrap().same_as(&ours), "{from}");
        true
    }

    #[test]
    fn every_schema_of_the_repository_agrees_with_apache_avro() {
        for (from, text) in AVSC {
            assert!(agrees(from, text), "{from} does not parse");
        }
        let inline: Vec<Json> = serde_json::from_str(INLINE).unwrap();
        let mut checked = 0;
        for entry in &inline {
            let from = entry["from"].as_str().unwrap();
            if agrees(from, &entry["schema"].to_string()) {
                checked += 1;
            }
        }
        // Most are valid; the rest are error cases of the parsers' tests.
        assert!(checked >= 78, "only {checked} of {} checked", inline.len());
    }

    #[test]
    fn known_answers() {
        // From Avro's share/test/data/schema-tests.txt (the Java implementation's fingerprints,
        // printed as signed longs).
        for (schema, fingerprint) in [
            ("\"null\"", 7195948357588979594_i64),
            ("\"boolean\"", -6970731678124411036),
            ("\"int\"", 8247732601305521295),
            ("\"long\"", -3434872931120570953),
            ("\"float\"", 5583340709985441680),
            ("\"double\"", -8181574048448539266),
            ("\"bytes\"", 5746618253357095269),
            ("\"string\"", -8142146995180207161),
        ] {
            let s = Schema::parse(schema).unwrap();
            assert_eq!(s.canonical_form(), schema);
            assert_eq!(s.fingerprint(), fingerprint as u64, "{schema}");
            assert!(agrees("known answer", schema));
        }
        assert_eq!(crc64_avro(b""), EMPTY);
        assert_eq!(Schema::parse(r#"{"type": "int"}"#).unwrap().fingerprint(), 8247732601305521295);
        assert_eq!(crc64_avro(b"\"int\""), Schema::parse("\"int\"").unwrap().fingerprint());
    }

    const EVERYTHING: &str = r#"{
        "type": "record", "name": "Movie", "namespace": "com.example.films",
        "doc": "A film", "aliases": ["Film", "org.old.Picture"], "x-owner": "catalog",
        "fields": [
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}, "doc": "key"},
            {"name": "date", "aliases": ["time", "day"], "type": {"type": "int", "logicalType": "date"}},
            {"name": "updated", "type": {"type": "long", "logicalType": "timestamp-millis"}, "order": "descending"},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}, "default": "\u0000"},
            {"name": "budget", "type": {"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 4}},
            {"name": "gross", "type": "Money"},
            {"name": "director", "type": {"type": "record", "name": "Person", "namespace": "com.example.people",
                "aliases": ["Human"], "fields": [
                    {"name": "name", "type": "string", "default": "unknown", "x-pii": true},
                    {"name": "agent", "type": ["null", "Person"], "default": null}
                ]}},
            {"name": "producer", "type": ["null", "com.example.people.Person"], "default": null},
            {"name": "genre", "type": {"type": "enum", "name": "Genre", "doc": "kinds", "aliases": ["Kind"],
                "symbols": ["DRAMA", "COMEDY", "HORROR"], "default": "DRAMA", "x-sort": "alpha"}},
            {"name": "genres", "type": {"type": "array", "items": "Genre"}, "default": []},
            {"name": "scores", "type": {"type": "map", "values": ["null", "double", "Genre"]}, "default": {}},
            {"name": "hash", "type": {"type": "fixed", "name": "Md5", "namespace": "org.crypto", "size": 16, "aliases": ["Digest"]}},
            {"name": "hashes", "type": {"type": "array", "items": "org.crypto.Md5"}},
            {"name": "nested", "type": {"type": "record", "name": "Inner", "fields": [
                {"name": "plain", "type": {"type": "record", "name": "Plain", "namespace": "", "fields": [
                    {"name": "n", "type": {"type": "int"}}
                ]}},
                {"name": "money", "type": "Money"}
            ]}},
            {"name": "id_bytes", "type": {"type": "fixed", "name": "Id", "size": 16, "logicalType": "uuid"}},
            {"name": "error", "type": ["null", {"type": "error", "name": "Oops", "fields": [{"name": "m", "type": "string"}]}]}
        ]
    }"#;

    #[test]
    fn hand_written_schemas_agree_with_apache_avro() {
        assert!(
            agrees("EVERYTHING", EVERYTHING) || {
                // apache-avro may refuse some corner (e.g. "error"): check without that field.
                let mut json: Json = serde_json::from_str(EVERYTHING).unwrap();
                json["fields"].as_array_mut().unwrap().pop();
                agrees("EVERYTHING without error", &json.to_string())
            }
        );
        for schema in [
            r#"{"type": "enum", "name": "a.b.E", "aliases": ["F"], "symbols": ["X", "Y"]}"#,
            r#"{"type": "fixed", "name": "F", "namespace": "n", "size": 3, "aliases": ["G"]}"#,
            r#"{"type": "array", "items": {"type": "map", "values": {"type": "array", "items": "bytes"}}}"#,
            r#"["null", "string", {"type": "record", "name": "R", "fields": []}, {"type": "enum", "name": "E", "symbols": ["A"]}]"#,
            r#"{"type": "record", "name": "Node", "namespace": "list", "fields": [
                {"name": "value", "type": "long"},
                {"name": "next", "type": ["null", "Node"]},
                {"name": "children", "type": {"type": "array", "items": "list.Node"}}
            ]}"#,
            r#"{"type": "record", "name": "Outer", "namespace": "com.example", "fields": [
                {"name": "a", "type": {"type": "record", "name": "Inner", "fields": [
                    {"name": "x", "type": {"type": "enum", "name": "org.other.Color", "symbols": ["RED"]}},
                    {"name": "y", "type": {"type": "fixed", "name": "Id", "size": 4}}
                ]}},
                {"name": "b", "type": "Inner"},
                {"name": "c", "type": "com.example.Inner"},
                {"name": "d", "type": "org.other.Color"},
                {"name": "f", "type": {"type": "record", "name": "Deep", "namespace": "org.other", "fields": [
                    {"name": "g", "type": "Color"},
                    {"name": "h", "type": "com.example.Id"}
                ]}}
            ]}"#,
            r#"{"type": "record", "name": "Esc", "fields": [{"name": "s", "type": "string", "default": "a\"b\\c\n\u00e9"}]}"#,
        ] {
            assert!(agrees("hand-written", schema), "{schema}");
        }
    }

    #[test]
    fn canonical_form_by_the_spec() {
        let s = Schema::parse(EVERYTHING).unwrap();
        let canonical = s.canonical_form();
        // Full names, named types once, attributes stripped, logical types their base types.
        assert!(canonical.starts_with(
            r#"{"name":"com.example.films.Movie","type":"record","fields":[{"name":"id","type":"string"},{"name":"date","type":"int"},{"name":"updated","type":"long"},{"name":"price","type":"bytes"},{"name":"budget","type":{"name":"com.example.films.Money","type":"fixed","size":8}},{"name":"gross","type":"com.example.films.Money"},{"name":"director","type":{"name":"com.example.people.Person","type":"record","fields":[{"name":"name","type":"string"},{"name":"agent","type":["null","com.example.people.Person"]}]}}"#
        ), "{canonical}");
        assert!(canonical.contains(r#"{"name":"plain","type":{"name":"Plain","type":"record","fields":[{"name":"n","type":"int"}]}},{"name":"money","type":"com.example.films.Money"}"#), "{canonical}");
        assert!(canonical.contains(r#""type":"record","fields":[{"name":"m","type":"string"}]"#), "{canonical}");
        for gone in ["doc", "aliases", "default", "logicalType", "precision", "order", "x-", "namespace", " "] {
            assert!(!canonical.contains(gone), "{gone} in {canonical}");
        }
        // Docs, aliases, defaults and attributes do not change it; names do.
        let plain = EVERYTHING
            .replace(r#""doc": "A film", "aliases": ["Film", "org.old.Picture"], "x-owner": "catalog","#, "")
            .replace(r#", "order": "descending""#, "");
        assert_ne!(plain, EVERYTHING);
        assert!(Schema::parse(&plain).unwrap().same_as(&s));
        assert_eq!(Schema::parse(&plain).unwrap().fingerprint(), s.fingerprint());
        let renamed = Schema::parse(&EVERYTHING.replace(r#""name": "Movie""#, r#""name": "Film""#)).unwrap();
        assert!(!renamed.same_as(&s));
        assert_ne!(renamed.fingerprint(), s.fingerprint());
    }

    #[test]
    fn canonical_form_of_a_type_in_context() {
        let s = Schema::parse(EVERYTHING).unwrap();
        let person = s.named_type("com.example.people.Person").unwrap();
        assert_eq!(
            s.canonical_form_of(person),
            r#"{"name":"com.example.people.Person","type":"record","fields":[{"name":"name","type":"string"},{"name":"agent","type":["null","com.example.people.Person"]}]}"#
        );
        assert_eq!(
            s.canonical_form_of(&AvroType::Array(Box::new(AvroType::Ref("org.crypto.Md5".into())))),
            r#"{"type":"array","items":{"name":"org.crypto.Md5","type":"fixed","size":16}}"#
        );
        // The shape of a definition names the types it uses.
        let inner = s.named_type("com.example.films.Inner").unwrap();
        assert_eq!(
            shape(inner),
            r#"{"name":"com.example.films.Inner","type":"record","fields":[{"name":"plain","type":"Plain"},{"name":"money","type":"com.example.films.Money"}]}"#
        );
    }
}
