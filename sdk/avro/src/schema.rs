//! Parsing Avro schema JSON into [`Schema`], and writing it back.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::canonical::shape;

/// A parsed Avro schema. Named types (record, enum, fixed) are defined once; later uses are
/// [`AvroType::Ref`]s that [`Schema::resolve`] follows.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// The top-level type.
    pub root: AvroType,
    /// Every named type, by full name (`namespace.name`). A named type with a logical type is
    /// stored wrapped in its [`AvroType::Logical`], so references keep the logical type.
    pub(crate) named: NamedTypes,
}

/// Named types by full name. Datum code looks a ref up for every value of a named type it
/// meets, so the hash is a cheap one rather than SipHash (names come from the schema, not from
/// the data, so flooding is not a concern).
pub(crate) type NamedTypes = HashMap<String, AvroType, BuildHasherDefault<NameHasher>>;

/// FxHash-style hasher, eight bytes at a time.
#[derive(Default, Clone, Copy)]
pub(crate) struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl NameHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// One Avro type.
#[derive(Debug, Clone, PartialEq)]
pub enum AvroType {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Record(Arc<RecordType>),
    Enum(Arc<EnumType>),
    Fixed(Arc<FixedType>),
    Array(Box<AvroType>),
    Map(Box<AvroType>),
    Union(Vec<AvroType>),
    /// A use of a named type defined elsewhere in the schema, by full name.
    Ref(String),
    /// A logical type (`timestamp-millis`, `decimal`, `uuid` ...): encoded as `base`; `attributes`
    /// holds `logicalType` and its parameters (and any other attribute of the type object that
    /// `base` does not keep itself) so they survive a round trip.
    Logical {
        base: Box<AvroType>,
        attributes: serde_json::Map<String, serde_json::Value>,
    },
}

/// A record type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordType {
    /// Full name.
    pub name: String,
    /// Other full names a reader of this type accepts from a writer (`aliases`; a short alias
    /// is taken in the namespace of `name`, as the spec says).
    pub aliases: Vec<String>,
    pub doc: Option<String>,
    pub fields: Vec<Field>,
    /// The type object's other attributes (custom properties), kept for the round trip. With a
    /// `logicalType`, they are in the [`AvroType::Logical`] wrapper instead.
    pub attributes: Map<String, Json>,
}

/// A record field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: AvroType,
    /// The default, in Avro's JSON form, if the schema gives one.
    pub default: Option<serde_json::Value>,
    pub doc: Option<String>,
    /// Other names a reader of this field accepts from a writer's field (`aliases`).
    pub aliases: Vec<String>,
    /// The field object's other attributes (`order`, custom properties), kept for the round trip.
    pub attributes: Map<String, Json>,
}

/// An enum type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnumType {
    /// Full name.
    pub name: String,
    /// Other full names, as [`RecordType::aliases`].
    pub aliases: Vec<String>,
    pub doc: Option<String>,
    pub symbols: Vec<String>,
    pub default: Option<String>,
    /// Other attributes, as [`RecordType::attributes`].
    pub attributes: Map<String, Json>,
}

/// A fixed type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FixedType {
    /// Full name.
    pub name: String,
    /// Other full names, as [`RecordType::aliases`].
    pub aliases: Vec<String>,
    pub doc: Option<String>,
    pub size: usize,
    /// Other attributes, as [`RecordType::attributes`].
    pub attributes: Map<String, Json>,
}

/// A schema that is not valid Avro.
#[derive(Debug, thiserror::Error)]
#[error("invalid Avro schema: {0}")]
pub struct SchemaError(pub String);

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

fn primitive(name: &str) -> Option<AvroType> {
    Some(match name {
        "null" => AvroType::Null,
        "boolean" => AvroType::Boolean,
        "int" => AvroType::Int,
        "long" => AvroType::Long,
        "float" => AvroType::Float,
        "double" => AvroType::Double,
        "bytes" => AvroType::Bytes,
        "string" => AvroType::String,
        _ => return None,
    })
}

impl Field {
    /// A field with no default, doc, aliases or attributes.
    pub fn new(name: impl Into<String>, ty: AvroType) -> Field {
        Field { name: name.into(), ty, default: None, doc: None, aliases: Vec::new(), attributes: Map::new() }
    }

    /// Whether a writer's field called `name` is this field: its name or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.iter().any(|a| a == name)
    }
}

impl RecordType {
    /// A record `name` (a full name) with `fields` and nothing else.
    pub fn new(name: impl Into<String>, fields: Vec<Field>) -> RecordType {
        RecordType { name: name.into(), fields, ..RecordType::default() }
    }

    /// The field called `name`, with its position.
    pub fn field(&self, name: &str) -> Option<(usize, &Field)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name)
    }
}

impl AvroType {
    /// The full name of a named type, or of the type a [`AvroType::Ref`] names.
    pub fn name(&self) -> Option<&str> {
        match self {
            AvroType::Record(r) => Some(&r.name),
            AvroType::Enum(e) => Some(&e.name),
            AvroType::Fixed(f) => Some(&f.name),
            AvroType::Ref(n) => Some(n),
            AvroType::Logical { base, .. } => base.name(),
            _ => None,
        }
    }

    /// The aliases of a named type (through a logical type); empty for other types.
    pub fn aliases(&self) -> &[String] {
        match self {
            AvroType::Record(r) => &r.aliases,
            AvroType::Enum(e) => &e.aliases,
            AvroType::Fixed(f) => &f.aliases,
            AvroType::Logical { base, .. } => base.aliases(),
            _ => &[],
        }
    }

    /// A short description for error messages: `int`, `record "movie"`, `union` ...
    pub fn describe(&self) -> String {
        match self {
            AvroType::Null => "null".into(),
            AvroType::Boolean => "boolean".into(),
            AvroType::Int => "int".into(),
            AvroType::Long => "long".into(),
            AvroType::Float => "float".into(),
            AvroType::Double => "double".into(),
            AvroType::Bytes => "bytes".into(),
            AvroType::String => "string".into(),
            AvroType::Record(r) => format!("record \"{}\"", r.name),
            AvroType::Enum(e) => format!("enum \"{}\"", e.name),
            AvroType::Fixed(f) => format!("fixed \"{}\"", f.name),
            AvroType::Array(_) => "array".into(),
            AvroType::Map(_) => "map".into(),
            AvroType::Union(_) => "union".into(),
            AvroType::Ref(n) => format!("\"{n}\""),
            AvroType::Logical { base, .. } => base.describe(),
        }
    }
}

impl Schema {
    /// Parses Avro schema JSON (Avro 1.11).
    pub fn parse(json: &str) -> Result<Schema, SchemaError> {
        let value: Json = serde_json::from_str(json).map_err(|e| SchemaError(format!("not valid JSON: {e}")))?;
        Schema::from_json_value(&value)
    }

    /// Parses an Avro schema already read as JSON.
    pub fn from_json_value(json: &Json) -> Result<Schema, SchemaError> {
        let mut parser = Parser::default();
        let root = parser.parse_type(json, "", "")?;
        let schema = Schema { root, named: parser.named };
        schema.check_defaults()?;
        Ok(schema)
    }

    /// Follows a [`AvroType::Ref`] to its definition; returns other types as they are. An
    /// unknown name (only possible in hand-built types) is returned unchanged.
    pub fn resolve<'a>(&'a self, ty: &'a AvroType) -> &'a AvroType {
        match ty {
            AvroType::Ref(name) => self.named.get(name).unwrap_or(ty),
            _ => ty,
        }
    }

    /// The root record, when the root is a record.
    pub fn root_record(&self) -> Option<&RecordType> {
        match self.resolve(&self.root) {
            AvroType::Record(r) => Some(r),
            _ => None,
        }
    }

    /// The definition of the named type `fullname`.
    pub fn named_type(&self, fullname: &str) -> Option<&AvroType> {
        self.named.get(fullname)
    }

    /// Every named type, by full name, in no particular order.
    pub fn named_types(&self) -> impl Iterator<Item = (&str, &AvroType)> {
        self.named.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// A schema whose root is `root`, which may use (through [`AvroType::Ref`]) the named types
    /// of `context`. Only the named types reachable from `root` are kept, so `root` may reuse a
    /// name of `context` (e.g. an output record named like the input record).
    pub fn from_root(root: AvroType, context: &Schema) -> Result<Schema, SchemaError> {
        let mut named = NamedTypes::default();
        // Definitions inside `root` win over `context`'s, so collect them first.
        collect_definitions(&root, &mut named)?;
        let mut pending = Vec::new();
        collect_refs(&root, &mut pending);
        while let Some(name) = pending.pop() {
            if named.contains_key(&name) {
                continue;
            }
            let def = context.named.get(&name).ok_or_else(|| SchemaError(format!("unknown type \"{name}\"")))?;
            collect_definitions(def, &mut named)?;
            collect_refs(def, &mut pending);
        }
        let schema = Schema { root, named };
        schema.check_defaults()?;
        Ok(schema)
    }

    /// A schema whose root is a new record `name` (a full name) with `fields`, whose types may
    /// use the named types of `context`: how a processor builds its output schema from some
    /// fields of its input schema.
    pub fn record(name: &str, fields: Vec<Field>, context: &Schema) -> Result<Schema, SchemaError> {
        check_fullname(name, "")?;
        let mut seen = HashSet::new();
        for f in &fields {
            if !valid_name(&f.name) {
                return Err(SchemaError(format!("invalid field name \"{}\" in record \"{name}\"", f.name)));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(SchemaError(format!("duplicate field \"{}\" in record \"{name}\"", f.name)));
            }
        }
        let root = AvroType::Record(Arc::new(RecordType::new(name, fields)));
        Schema::from_root(root, context)
    }

    /// The schema as JSON text. Each named type is written in full at its first use and by full
    /// name afterwards, so the text is self-contained and parses back to an equivalent schema.
    pub fn to_json(&self) -> String {
        self.to_json_value().to_string()
    }

    /// The schema as a JSON value (see [`Schema::to_json`]).
    pub fn to_json_value(&self) -> Json {
        let mut writer = Writer { schema: self, written: HashSet::new() };
        writer.write(&self.root, "")
    }

    /// Checks that every field default fits its field's type.
    fn check_defaults(&self) -> Result<(), SchemaError> {
        let mut records: Vec<&RecordType> = Vec::new();
        gather_records(&self.root, &mut records);
        for def in self.named.values() {
            gather_records(def, &mut records);
        }
        for record in records {
            for field in &record.fields {
                if let Some(default) = &field.default {
                    super::json::from_json(self, &field.ty, default).map_err(|e| {
                        SchemaError(format!("invalid default for field \"{}.{}\": {e}", record.name, field.name))
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// Records defined directly in `ty` (not through refs), each once per occurrence.
fn gather_records<'a>(ty: &'a AvroType, out: &mut Vec<&'a RecordType>) {
    match ty {
        AvroType::Record(r) => {
            if out.iter().any(|seen| std::ptr::eq(*seen, &**r)) {
                return;
            }
            out.push(r);
            for f in &r.fields {
                gather_records(&f.ty, out);
            }
        }
        AvroType::Array(t) | AvroType::Map(t) => gather_records(t, out),
        AvroType::Union(bs) => bs.iter().for_each(|b| gather_records(b, out)),
        AvroType::Logical { base, .. } => gather_records(base, out),
        _ => {}
    }
}

/// Adds every named type defined inline in `ty` to `named`. The same name defined twice is
/// fine when both definitions have the same canonical form (the first one is kept, docs,
/// aliases and attributes included); else it is an error.
fn collect_definitions(ty: &AvroType, named: &mut NamedTypes) -> Result<(), SchemaError> {
    let mut define = |name: &str, def: &AvroType| -> Result<bool, SchemaError> {
        match named.get(name) {
            Some(existing) if existing == def => Ok(false),
            // Named types inside are written by name and checked on their own below.
            Some(existing) if shape(existing) == shape(def) => Ok(false),
            Some(_) => Err(SchemaError(format!("type \"{name}\" is defined twice, differently"))),
            None => {
                named.insert(name.to_string(), def.clone());
                Ok(true)
            }
        }
    };
    match ty {
        AvroType::Record(r) => {
            // A repeated definition's fields are walked too: types defined inline in them must
            // agree with the first definitions as well.
            define(&r.name, ty)?;
            for f in &r.fields {
                collect_definitions(&f.ty, named)?;
            }
        }
        AvroType::Enum(e) => {
            define(&e.name, ty)?;
        }
        AvroType::Fixed(f) => {
            define(&f.name, ty)?;
        }
        AvroType::Logical { base, .. } => match &**base {
            // The wrapper is the definition, as the parser stores it.
            AvroType::Record(_) | AvroType::Enum(_) | AvroType::Fixed(_) => {
                let name = base.name().unwrap_or_default().to_string();
                define(&name, ty)?;
                {
                    if let AvroType::Record(r) = &**base {
                        for f in &r.fields {
                            collect_definitions(&f.ty, named)?;
                        }
                    }
                }
            }
            other => collect_definitions(other, named)?,
        },
        AvroType::Array(t) | AvroType::Map(t) => collect_definitions(t, named)?,
        AvroType::Union(bs) => {
            for b in bs {
                collect_definitions(b, named)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Pushes the name of every [`AvroType::Ref`] in `ty`.
fn collect_refs(ty: &AvroType, out: &mut Vec<String>) {
    match ty {
        AvroType::Ref(n) => out.push(n.clone()),
        AvroType::Record(r) => r.fields.iter().for_each(|f| collect_refs(&f.ty, out)),
        AvroType::Array(t) | AvroType::Map(t) => collect_refs(t, out),
        AvroType::Union(bs) => bs.iter().for_each(|b| collect_refs(b, out)),
        AvroType::Logical { base, .. } => collect_refs(base, out),
        _ => {}
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the Avro name rule.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a full name (dot-separated names) whose last part is not a primitive type name.
fn check_fullname(fullname: &str, loc: &str) -> Result<(), SchemaError> {
    let short = fullname.rsplit('.').next().unwrap_or(fullname);
    if !fullname.split('.').all(valid_name) {
        return Err(SchemaError(format!("invalid name \"{fullname}\"{loc}")));
    }
    if PRIMITIVES.contains(&short) {
        return Err(SchemaError(format!("a named type cannot be called \"{short}\"{loc}")));
    }
    Ok(())
}

fn type_word(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

const RECORD_KEYS: &[&str] = &["type", "name", "namespace", "doc", "aliases", "fields"];
const ENUM_KEYS: &[&str] = &["type", "name", "namespace", "doc", "aliases", "symbols", "default"];
const FIXED_KEYS: &[&str] = &["type", "name", "namespace", "doc", "aliases", "size"];
const FIELD_KEYS: &[&str] = &["name", "type", "default", "doc", "aliases"];

/// The attributes of `obj` other than `own`.
fn other_attributes(obj: &Map<String, Json>, own: &[&str]) -> Map<String, Json> {
    obj.iter().filter(|(k, _)| !own.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The `aliases` of a named type whose namespace is `space` (as full names), or of a field
/// (`space` is `None`).
fn parse_aliases(obj: &Map<String, Json>, space: Option<&str>, of: &str) -> Result<Vec<String>, SchemaError> {
    let list = match obj.get("aliases") {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Array(list)) => list,
        Some(other) => {
            return Err(SchemaError(format!(
                "\"aliases\" of {of} must be an array of names, found {}",
                type_word(other)
            )))
        }
    };
    list.iter()
        .map(|alias| {
            let alias = match alias {
                Json::String(a) => a.as_str(),
                other => return Err(SchemaError(format!("an alias of {of} is {}, not a name", type_word(other)))),
            };
            let (full, ok) = match space {
                None => (alias.to_string(), valid_name(alias)),
                Some(_) if alias.contains('.') => (alias.to_string(), alias.split('.').all(valid_name)),
                Some("") => (alias.to_string(), valid_name(alias)),
                Some(space) => (format!("{space}.{alias}"), valid_name(alias)),
            };
            if ok {
                Ok(full)
            } else {
                Err(SchemaError(format!("invalid alias \"{alias}\" of {of}")))
            }
        })
        .collect()
}

/// The doc, aliases and other attributes of a named type.
type NamedExtras = (Option<String>, Vec<String>, Map<String, Json>);

/// Parsing state: the named types defined so far.
#[derive(Default)]
struct Parser {
    named: NamedTypes,
    /// Names defined or being defined: a record's own name is usable inside its fields.
    known: HashSet<String>,
}

impl Parser {
    /// Parses one type. `ns` is the enclosing namespace, `loc` says where we are for errors
    /// (` in field "movie.cast"`, or empty at the root).
    fn parse_type(&mut self, json: &Json, ns: &str, loc: &str) -> Result<AvroType, SchemaError> {
        match json {
            Json::String(name) => self.reference(name, ns, loc),
            Json::Array(branches) => self.parse_union(branches, ns, loc),
            Json::Object(obj) => self.parse_object(obj, ns, loc),
            other => {
                Err(SchemaError(format!("expected a type name, object or array{loc}, found {}", type_word(other))))
            }
        }
    }

    /// A primitive type name, or a use of a named type defined earlier.
    fn reference(&self, name: &str, ns: &str, loc: &str) -> Result<AvroType, SchemaError> {
        if let Some(p) = primitive(name) {
            return Ok(p);
        }
        if !name.contains('.') && !ns.is_empty() {
            let full = format!("{ns}.{name}");
            if self.known.contains(&full) {
                return Ok(AvroType::Ref(full));
            }
        }
        // Dotted names are full names; a short name not found in the enclosing namespace may
        // still be in the null namespace (as Java's parser allows).
        if self.known.contains(name) {
            return Ok(AvroType::Ref(name.to_string()));
        }
        Err(SchemaError(format!("unknown type \"{name}\"{loc}")))
    }

    fn parse_union(&mut self, branches: &[Json], ns: &str, loc: &str) -> Result<AvroType, SchemaError> {
        let mut types = Vec::with_capacity(branches.len());
        let mut seen = HashSet::new();
        for b in branches {
            let ty = self.parse_type(b, ns, loc)?;
            let key = match strip_logical(&ty) {
                AvroType::Union(_) => return Err(SchemaError(format!("a union{loc} directly contains another union"))),
                AvroType::Array(_) => "array".to_string(),
                AvroType::Map(_) => "map".to_string(),
                other => other.name().map_or_else(|| other.describe(), str::to_string),
            };
            if !seen.insert(key.clone()) {
                return Err(SchemaError(format!("a union{loc} has two branches of type \"{key}\"")));
            }
            types.push(ty);
        }
        Ok(AvroType::Union(types))
    }

    fn parse_object(&mut self, obj: &Map<String, Json>, ns: &str, loc: &str) -> Result<AvroType, SchemaError> {
        let Some(ty) = obj.get("type") else {
            return Err(SchemaError(format!("type object{loc} has no \"type\"")));
        };
        // Per the spec, a logicalType that is not a string is ignored (kept as an attribute of
        // a named type, dropped elsewhere).
        let logical = matches!(obj.get("logicalType"), Some(Json::String(_)));
        let (base, own_keys) = match ty {
            Json::String(t) => match t.as_str() {
                "record" | "error" => (self.parse_record(obj, ns, loc, logical)?, RECORD_KEYS),
                "enum" => (self.parse_enum(obj, ns, loc, logical)?, ENUM_KEYS),
                "fixed" => (self.parse_fixed(obj, ns, loc, logical)?, FIXED_KEYS),
                "array" => {
                    let items = obj.get("items").ok_or_else(|| SchemaError(format!("array{loc} has no \"items\"")))?;
                    let items = self.parse_type(items, ns, loc)?;
                    (AvroType::Array(Box::new(items)), &["type", "items"][..])
                }
                "map" => {
                    let values = obj.get("values").ok_or_else(|| SchemaError(format!("map{loc} has no \"values\"")))?;
                    let values = self.parse_type(values, ns, loc)?;
                    (AvroType::Map(Box::new(values)), &["type", "values"][..])
                }
                other => (self.reference(other, ns, loc)?, &["type"][..]),
            },
            Json::Object(_) | Json::Array(_) => (self.parse_type(ty, ns, loc)?, &["type"][..]),
            other => {
                return Err(SchemaError(format!(
                    "\"type\"{loc} must be a string, object or array, found {}",
                    type_word(other)
                )))
            }
        };
        if !logical {
            return Ok(base);
        }
        let attributes = other_attributes(obj, own_keys);
        let defines = matches!(base, AvroType::Record(_) | AvroType::Enum(_) | AvroType::Fixed(_));
        let logical = AvroType::Logical { base: Box::new(base), attributes };
        if defines {
            // Store the wrapper so later references keep the logical type (a decimal fixed).
            let name = logical.name().unwrap_or_default().to_string();
            self.named.insert(name, logical.clone());
        }
        Ok(logical)
    }

    /// Reads `name`/`namespace` of a named type definition and claims the full name. Returns
    /// the full name and the namespace its own nested types inherit.
    fn define(&mut self, obj: &Map<String, Json>, ns: &str, loc: &str) -> Result<(String, String), SchemaError> {
        let name = match obj.get("name") {
            Some(Json::String(n)) => n.as_str(),
            Some(other) => {
                return Err(SchemaError(format!("\"name\"{loc} must be a string, found {}", type_word(other))))
            }
            None => return Err(SchemaError(format!("named type{loc} has no \"name\""))),
        };
        let (fullname, space) = if let Some(dot) = name.rfind('.') {
            (name.to_string(), name[..dot].to_string())
        } else {
            let space = match obj.get("namespace") {
                Some(Json::String(s)) => s.as_str(),
                Some(Json::Null) | None => ns,
                Some(other) => {
                    return Err(SchemaError(format!(
                        "\"namespace\" of \"{name}\" must be a string, found {}",
                        type_word(other)
                    )))
                }
            };
            if space.is_empty() {
                (name.to_string(), String::new())
            } else {
                (format!("{space}.{name}"), space.to_string())
            }
        };
        check_fullname(&fullname, loc)?;
        if !self.known.insert(fullname.clone()) {
            return Err(SchemaError(format!("type \"{fullname}\" is defined twice")));
        }
        Ok((fullname, space))
    }

    /// The doc, aliases and other attributes of a named type `fullname` in namespace `space`
    /// (no attributes when a logical type wrapper keeps them).
    fn named_extras(
        obj: &Map<String, Json>,
        fullname: &str,
        space: &str,
        own: &[&str],
        logical: bool,
    ) -> Result<NamedExtras, SchemaError> {
        let doc = obj.get("doc").and_then(Json::as_str).map(str::to_string);
        let aliases = parse_aliases(obj, Some(space), &format!("\"{fullname}\""))?;
        let attributes = if logical { Map::new() } else { other_attributes(obj, own) };
        Ok((doc, aliases, attributes))
    }

    fn parse_record(
        &mut self,
        obj: &Map<String, Json>,
        ns: &str,
        loc: &str,
        logical: bool,
    ) -> Result<AvroType, SchemaError> {
        let (fullname, space) = self.define(obj, ns, loc)?;
        let (doc, aliases, attributes) = Parser::named_extras(obj, &fullname, &space, RECORD_KEYS, logical)?;
        let Some(Json::Array(fields_json)) = obj.get("fields") else {
            return Err(SchemaError(format!("record \"{fullname}\" needs a \"fields\" array")));
        };
        let mut fields = Vec::with_capacity(fields_json.len());
        let mut seen = HashSet::new();
        for f in fields_json {
            let Json::Object(fo) = f else {
                return Err(SchemaError(format!(
                    "a field of record \"{fullname}\" is {}, not an object",
                    type_word(f)
                )));
            };
            let name = match fo.get("name") {
                Some(Json::String(n)) if valid_name(n) => n.clone(),
                Some(Json::String(n)) => {
                    return Err(SchemaError(format!("invalid field name \"{n}\" in record \"{fullname}\"")))
                }
                _ => return Err(SchemaError(format!("a field of record \"{fullname}\" has no \"name\" string"))),
            };
            if !seen.insert(name.clone()) {
                return Err(SchemaError(format!("duplicate field \"{name}\" in record \"{fullname}\"")));
            }
            let floc = format!(" in field \"{fullname}.{name}\"");
            let ty = fo.get("type").ok_or_else(|| SchemaError(format!("no \"type\"{floc}")))?;
            let ty = self.parse_type(ty, &space, &floc)?;
            let doc = fo.get("doc").and_then(Json::as_str).map(str::to_string);
            let aliases = parse_aliases(fo, None, &format!("field \"{fullname}.{name}\""))?;
            fields.push(Field {
                name,
                ty,
                default: fo.get("default").cloned(),
                doc,
                aliases,
                attributes: other_attributes(fo, FIELD_KEYS),
            });
        }
        let record =
            AvroType::Record(Arc::new(RecordType { name: fullname.clone(), aliases, doc, fields, attributes }));
        self.named.insert(fullname, record.clone());
        Ok(record)
    }

    fn parse_enum(
        &mut self,
        obj: &Map<String, Json>,
        ns: &str,
        loc: &str,
        logical: bool,
    ) -> Result<AvroType, SchemaError> {
        let (fullname, space) = self.define(obj, ns, loc)?;
        let (doc, aliases, attributes) = Parser::named_extras(obj, &fullname, &space, ENUM_KEYS, logical)?;
        let Some(Json::Array(symbols_json)) = obj.get("symbols") else {
            return Err(SchemaError(format!("enum \"{fullname}\" needs a \"symbols\" array")));
        };
        let mut symbols = Vec::with_capacity(symbols_json.len());
        for s in symbols_json {
            match s {
                Json::String(s) if valid_name(s) => {
                    if symbols.contains(s) {
                        return Err(SchemaError(format!("enum \"{fullname}\" has symbol \"{s}\" twice")));
                    }
                    symbols.push(s.clone());
                }
                other => return Err(SchemaError(format!("enum \"{fullname}\" has an invalid symbol {other}"))),
            }
        }
        let default = match obj.get("default") {
            None => None,
            Some(Json::String(d)) if symbols.contains(d) => Some(d.clone()),
            Some(other) => {
                return Err(SchemaError(format!("default {other} of enum \"{fullname}\" is not one of its symbols")))
            }
        };
        let ty =
            AvroType::Enum(Arc::new(EnumType { name: fullname.clone(), aliases, doc, symbols, default, attributes }));
        self.named.insert(fullname, ty.clone());
        Ok(ty)
    }

    fn parse_fixed(
        &mut self,
        obj: &Map<String, Json>,
        ns: &str,
        loc: &str,
        logical: bool,
    ) -> Result<AvroType, SchemaError> {
        let (fullname, space) = self.define(obj, ns, loc)?;
        let (doc, aliases, attributes) = Parser::named_extras(obj, &fullname, &space, FIXED_KEYS, logical)?;
        let size = obj.get("size").and_then(Json::as_u64).and_then(|s| usize::try_from(s).ok()).ok_or_else(|| {
            SchemaError(format!("fixed \"{fullname}\" needs a \"size\" that is a non-negative integer"))
        })?;
        let ty = AvroType::Fixed(Arc::new(FixedType { name: fullname.clone(), aliases, doc, size, attributes }));
        self.named.insert(fullname, ty.clone());
        Ok(ty)
    }
}

fn strip_logical(ty: &AvroType) -> &AvroType {
    match ty {
        AvroType::Logical { base, .. } => strip_logical(base),
        _ => ty,
    }
}

/// Writes types as JSON, remembering which named types are already written.
struct Writer<'a> {
    schema: &'a Schema,
    written: HashSet<String>,
}

impl Writer<'_> {
    /// `ns` is the namespace a short name would be resolved in at this point of the output.
    fn write(&mut self, ty: &AvroType, ns: &str) -> Json {
        let s = |s: &str| Json::String(s.to_string());
        match ty {
            AvroType::Null => s("null"),
            AvroType::Boolean => s("boolean"),
            AvroType::Int => s("int"),
            AvroType::Long => s("long"),
            AvroType::Float => s("float"),
            AvroType::Double => s("double"),
            AvroType::Bytes => s("bytes"),
            AvroType::String => s("string"),
            AvroType::Record(r) => {
                if !self.written.insert(r.name.clone()) {
                    return s(&r.name);
                }
                let mut obj = self.header("record", &r.name, ns, &r.aliases, &r.doc);
                let space = namespace_of(&r.name);
                let fields = r
                    .fields
                    .iter()
                    .map(|f| {
                        let mut fo = Map::new();
                        fo.insert("name".into(), s(&f.name));
                        fo.insert("type".into(), self.write(&f.ty, space));
                        if let Some(d) = &f.default {
                            fo.insert("default".into(), d.clone());
                        }
                        if let Some(doc) = &f.doc {
                            fo.insert("doc".into(), s(doc));
                        }
                        if !f.aliases.is_empty() {
                            fo.insert("aliases".into(), Json::Array(f.aliases.iter().map(|a| s(a)).collect()));
                        }
                        add_attributes(&mut fo, &f.attributes);
                        Json::Object(fo)
                    })
                    .collect();
                obj.insert("fields".into(), Json::Array(fields));
                add_attributes(&mut obj, &r.attributes);
                Json::Object(obj)
            }
            AvroType::Enum(e) => {
                if !self.written.insert(e.name.clone()) {
                    return s(&e.name);
                }
                let mut obj = self.header("enum", &e.name, ns, &e.aliases, &e.doc);
                obj.insert("symbols".into(), Json::Array(e.symbols.iter().map(|x| s(x)).collect()));
                if let Some(d) = &e.default {
                    obj.insert("default".into(), s(d));
                }
                add_attributes(&mut obj, &e.attributes);
                Json::Object(obj)
            }
            AvroType::Fixed(f) => {
                if !self.written.insert(f.name.clone()) {
                    return s(&f.name);
                }
                let mut obj = self.header("fixed", &f.name, ns, &f.aliases, &f.doc);
                obj.insert("size".into(), Json::from(f.size));
                add_attributes(&mut obj, &f.attributes);
                Json::Object(obj)
            }
            AvroType::Array(items) => {
                let mut obj = Map::new();
                obj.insert("type".into(), s("array"));
                obj.insert("items".into(), self.write(items, ns));
                Json::Object(obj)
            }
            AvroType::Map(values) => {
                let mut obj = Map::new();
                obj.insert("type".into(), s("map"));
                obj.insert("values".into(), self.write(values, ns));
                Json::Object(obj)
            }
            AvroType::Union(bs) => Json::Array(bs.iter().map(|b| self.write(b, ns)).collect()),
            AvroType::Ref(name) => {
                if self.written.contains(name) {
                    return s(name);
                }
                // First use in output order: write the definition here.
                match self.schema.named.get(name) {
                    Some(def) => self.write(def, ns),
                    None => s(name),
                }
            }
            AvroType::Logical { base, attributes } => {
                let mut obj = match self.write(base, ns) {
                    Json::Object(obj) => obj,
                    other => {
                        let mut obj = Map::new();
                        obj.insert("type".into(), other);
                        obj
                    }
                };
                add_attributes(&mut obj, attributes);
                Json::Object(obj)
            }
        }
    }

    /// `type` and `name` of a named type definition: the full name, plus an empty namespace
    /// when a null-namespace type sits inside a namespaced one (else it would inherit it); then
    /// its aliases (full names) and doc.
    fn header(
        &self,
        kind: &str,
        fullname: &str,
        ns: &str,
        aliases: &[String],
        doc: &Option<String>,
    ) -> Map<String, Json> {
        let mut obj = Map::new();
        obj.insert("type".into(), Json::String(kind.into()));
        obj.insert("name".into(), Json::String(fullname.into()));
        if !fullname.contains('.') && !ns.is_empty() {
            obj.insert("namespace".into(), Json::String(String::new()));
        }
        if !aliases.is_empty() {
            let list = aliases.iter().map(|a| Json::String(a.clone())).collect();
            obj.insert("aliases".into(), Json::Array(list));
        }
        if let Some(doc) = doc {
            obj.insert("doc".into(), Json::String(doc.clone()));
        }
        obj
    }
}

/// Adds `attributes` to a type or field object, without overwriting what is there already (a
/// hand-built attribute cannot replace `name` or `type`).
fn add_attributes(obj: &mut Map<String, Json>, attributes: &Map<String, Json>) {
    for (k, v) in attributes {
        if !obj.contains_key(k) {
            obj.insert(k.clone(), v.clone());
        }
    }
}

fn namespace_of(fullname: &str) -> &str {
    fullname.rfind('.').map_or("", |dot| &fullname[..dot])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Schema {
        Schema::parse(json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }

    fn parse_err(json: &str) -> String {
        match Schema::parse(json) {
            Ok(s) => panic!("parsed but should not: {json} -> {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn round_trip(json: &str) -> Schema {
        let schema = parse(json);
        let text = schema.to_json();
        let again = Schema::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(schema.root, again.root, "{text}");
        assert_eq!(schema, again, "{text}");
        // Also agreed by an independent parser, when it accepts the input (it does not look
        // for short names in the null namespace, as Java's parser and ours do).
        if apache_avro::Schema::parse_str(json).is_ok() {
            apache_avro::Schema::parse_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        }
        schema
    }

    #[test]
    fn primitives() {
        for (name, ty) in [
            ("null", AvroType::Null),
            ("boolean", AvroType::Boolean),
            ("int", AvroType::Int),
            ("long", AvroType::Long),
            ("float", AvroType::Float),
            ("double", AvroType::Double),
            ("bytes", AvroType::Bytes),
            ("string", AvroType::String),
        ] {
            assert_eq!(parse(&format!("\"{name}\"")).root, ty);
            assert_eq!(parse(&format!("{{\"type\": \"{name}\"}}")).root, ty);
            assert_eq!(parse(&format!("{{\"type\": {{\"type\": \"{name}\"}}}}")).root, ty);
            round_trip(&format!("\"{name}\""));
        }
    }

    #[test]
    fn record_with_everything() {
        let s = round_trip(
            r#"{"type": "record", "name": "movie", "doc": "A film", "fields": [
                {"name": "title", "type": "string", "doc": "the title"},
                {"name": "year", "type": "int", "default": 1900},
                {"name": "rating", "type": ["null", "double"], "default": null},
                {"name": "cast", "type": {"type": "array", "items": {"type": "record", "name": "actor",
                    "fields": [{"name": "name", "type": "string"}]}}},
                {"name": "director", "type": "actor"},
                {"name": "tags", "type": {"type": "map", "values": "long"}},
                {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["DRAMA", "COMEDY"], "default": "DRAMA"}},
                {"name": "hash", "type": {"type": "fixed", "name": "md5", "size": 16}},
                {"name": "other", "type": ["md5", "Genre", "string"]}
            ]}"#,
        );
        let rec = s.root_record().unwrap();
        assert_eq!(rec.name, "movie");
        assert_eq!(rec.doc.as_deref(), Some("A film"));
        assert_eq!(rec.fields.len(), 9);
        assert_eq!(rec.fields[0].doc.as_deref(), Some("the title"));
        assert_eq!(rec.fields[1].default, Some(serde_json::json!(1900)));
        assert_eq!(rec.fields[2].default, Some(Json::Null));
        assert_eq!(rec.fields[0].default, None);
        assert_eq!(rec.fields[4].ty, AvroType::Ref("actor".into()));
        let AvroType::Record(actor) = s.resolve(&rec.fields[4].ty) else { panic!() };
        assert_eq!(actor.fields[0].name, "name");
        assert_eq!(
            rec.fields[8].ty,
            AvroType::Union(vec![AvroType::Ref("md5".into()), AvroType::Ref("Genre".into()), AvroType::String])
        );
        let AvroType::Enum(genre) = &rec.fields[6].ty else { panic!() };
        assert_eq!(genre.default.as_deref(), Some("DRAMA"));
        assert_eq!(s.resolve(&AvroType::Int), &AvroType::Int);
        assert!(s.named_type("md5").is_some());
        assert_eq!(s.named_types().count(), 4);
    }

    #[test]
    fn error_is_a_record() {
        let s = parse(r#"{"type": "error", "name": "Oops", "fields": [{"name": "m", "type": "string"}]}"#);
        assert_eq!(s.root_record().unwrap().name, "Oops");
        assert!(parse("\"int\"").root_record().is_none());
    }

    #[test]
    fn namespaces() {
        let s = round_trip(
            r#"{"type": "record", "name": "Outer", "namespace": "com.example", "fields": [
                {"name": "a", "type": {"type": "record", "name": "Inner", "fields": [
                    {"name": "x", "type": {"type": "enum", "name": "org.other.Color", "symbols": ["RED"]}},
                    {"name": "y", "type": {"type": "fixed", "name": "Id", "size": 4}},
                    {"name": "z", "type": {"type": "record", "name": "Plain", "namespace": "", "fields": []}}
                ]}},
                {"name": "b", "type": "Inner"},
                {"name": "c", "type": "com.example.Inner"},
                {"name": "d", "type": "org.other.Color"},
                {"name": "e", "type": "Plain"},
                {"name": "f", "type": {"type": "record", "name": "Deep", "namespace": "org.other", "fields": [
                    {"name": "g", "type": "Color"},
                    {"name": "h", "type": "com.example.Id"}
                ]}}
            ]}"#,
        );
        let rec = s.root_record().unwrap();
        assert_eq!(rec.name, "com.example.Outer");
        let AvroType::Record(inner) = &rec.fields[0].ty else { panic!() };
        assert_eq!(inner.name, "com.example.Inner");
        // The enum's dotted name sets its own namespace; the fixed inherits Inner's namespace.
        assert_eq!(inner.fields[0].ty.name(), Some("org.other.Color"));
        assert_eq!(inner.fields[1].ty.name(), Some("com.example.Id"));
        assert_eq!(inner.fields[2].ty.name(), Some("Plain"));
        assert_eq!(rec.fields[1].ty, AvroType::Ref("com.example.Inner".into()));
        assert_eq!(rec.fields[2].ty, AvroType::Ref("com.example.Inner".into()));
        assert_eq!(rec.fields[4].ty, AvroType::Ref("Plain".into()));
        let AvroType::Record(deep) = &rec.fields[5].ty else { panic!() };
        assert_eq!(deep.fields[0].ty, AvroType::Ref("org.other.Color".into()));
        assert_eq!(deep.fields[1].ty, AvroType::Ref("com.example.Id".into()));
    }

    #[test]
    fn recursive_linked_list() {
        let s = round_trip(
            r#"{"type": "record", "name": "Node", "fields": [
                {"name": "value", "type": "long"},
                {"name": "next", "type": ["null", "Node"]},
                {"name": "children", "type": {"type": "array", "items": "Node"}}
            ]}"#,
        );
        let rec = s.root_record().unwrap();
        assert_eq!(rec.fields[1].ty, AvroType::Union(vec![AvroType::Null, AvroType::Ref("Node".into())]));
        assert!(matches!(s.resolve(&AvroType::Ref("Node".into())), AvroType::Record(_)));
    }

    #[test]
    fn logical_types() {
        let s = round_trip(
            r#"{"type": "record", "name": "L", "fields": [
                {"name": "d", "type": {"type": "int", "logicalType": "date"}},
                {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
                {"name": "fdec", "type": {"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 4}},
                {"name": "fdec2", "type": "Money"},
                {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
                {"name": "odd", "type": {"type": "int", "logicalType": 5}}
            ]}"#,
        );
        let rec = s.root_record().unwrap();
        let AvroType::Logical { base, attributes } = &rec.fields[2].ty else { panic!() };
        assert_eq!(**base, AvroType::Bytes);
        assert_eq!(attributes["logicalType"], "decimal");
        assert_eq!(attributes["precision"], 9);
        assert_eq!(attributes["scale"], 2);
        assert_eq!(attributes.len(), 3);
        let AvroType::Logical { base, attributes } = &rec.fields[3].ty else { panic!() };
        assert!(matches!(&**base, AvroType::Fixed(f) if f.size == 8 && f.name == "Money"));
        assert_eq!(attributes.len(), 3);
        // A reference to a logical named type keeps the logical type.
        assert_eq!(s.resolve(&rec.fields[4].ty), &rec.fields[3].ty);
        // A non-string logicalType is ignored.
        assert_eq!(rec.fields[6].ty, AvroType::Int);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse_err(r#"{"type": "record", "name": "movie", "fields": [{"name": "cast", "type": "Foo"}]}"#);
        assert!(e.contains(r#"unknown type "Foo" in field "movie.cast""#), "{e}");
        let e = parse_err(
            r#"{"type": "record", "name": "m", "fields": [{"name": "a", "type": "int"}, {"name": "a", "type": "long"}]}"#,
        );
        assert!(e.contains(r#"duplicate field "a" in record "m""#), "{e}");
        let e = parse_err(r#"{"type": "enum", "name": "E", "symbols": ["A", "1B"]}"#);
        assert!(e.contains("invalid symbol"), "{e}");
        let e = parse_err(r#"{"type": "enum", "name": "E", "symbols": ["A", "A"]}"#);
        assert!(e.contains("twice"), "{e}");
        let e = parse_err(r#"{"type": "enum", "name": "E", "symbols": ["A"], "default": "B"}"#);
        assert!(e.contains("not one of its symbols"), "{e}");
        let e = parse_err(r#"["null", ["int", "long"]]"#);
        assert!(e.contains("directly contains another union"), "{e}");
        let e = parse_err(r#"["null", "int", "null"]"#);
        assert!(e.contains("two branches of type \"null\""), "{e}");
        let e = parse_err(r#"[{"type": "array", "items": "int"}, {"type": "array", "items": "long"}]"#);
        assert!(e.contains("two branches of type \"array\""), "{e}");
        let e = parse_err(r#"["int", {"type": "int", "logicalType": "date"}]"#);
        assert!(e.contains("two branches"), "{e}");
        let e = parse_err(
            r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": {"type": "fixed", "name": "R", "size": 1}}]}"#,
        );
        assert!(e.contains("\"R\" is defined twice"), "{e}");
        let e = parse_err(r#"{"type": "fixed", "name": "F", "size": -1}"#);
        assert!(e.contains("size"), "{e}");
        let e = parse_err(r#"{"type": "fixed", "name": "int", "size": 1}"#);
        assert!(e.contains("cannot be called \"int\""), "{e}");
        let e = parse_err(r#"{"type": "record", "name": "a-b", "fields": []}"#);
        assert!(e.contains("invalid name \"a-b\""), "{e}");
        let e =
            parse_err(r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": "x"}]}"#);
        assert!(e.contains("invalid default for field \"R.a\""), "{e}");
        let e = parse_err(r#"{"type": "array"}"#);
        assert!(e.contains("no \"items\""), "{e}");
        let e = parse_err(r#"{"type": "record", "name": "R"}"#);
        assert!(e.contains("\"fields\""), "{e}");
        let e = parse_err("{nope");
        assert!(e.contains("not valid JSON"), "{e}");
        let e = parse_err("42");
        assert!(e.contains("found a number"), "{e}");
        // A reference only sees types defined before it.
        let e = parse_err(
            r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "S"}, {"name": "b", "type": {"type": "fixed", "name": "S", "size": 1}}]}"#,
        );
        assert!(e.contains("unknown type \"S\""), "{e}");
    }

    #[test]
    fn defaults_are_checked_against_their_type() {
        parse(
            r#"{"type": "record", "name": "R", "fields": [
            {"name": "a", "type": "bytes", "default": "\u00ff"},
            {"name": "b", "type": {"type": "array", "items": "int"}, "default": [1, 2]},
            {"name": "c", "type": {"type": "record", "name": "S", "fields": [{"name": "x", "type": "int", "default": 3}]}, "default": {}},
            {"name": "d", "type": "double", "default": 1},
            {"name": "e", "type": ["null", "S"], "default": null}
        ]}"#,
        );
        parse_err(
            r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "bytes", "default": "\u0100"}]}"#,
        );
    }

    #[test]
    fn record_builder_writes_definitions_at_first_use() {
        let input = parse(
            r#"{"type": "record", "name": "movie", "namespace": "ns", "fields": [
                {"name": "lead", "type": {"type": "record", "name": "actor", "fields": [
                    {"name": "name", "type": "string"},
                    {"name": "agent", "type": ["null", "actor"]}
                ]}},
                {"name": "cast", "type": {"type": "array", "items": "actor"}},
                {"name": "year", "type": "int"}
            ]}"#,
        );
        let rec = input.root_record().unwrap();
        // Output order puts the reference before the definition it had in the input.
        let fields = vec![rec.fields[2].clone(), rec.fields[1].clone(), rec.fields[0].clone()];
        let out = Schema::record("ns.movie", fields, &input).unwrap();
        let text = out.to_json();
        let again = Schema::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let r = again.root_record().unwrap();
        assert_eq!(r.name, "ns.movie");
        assert!(
            matches!(&r.fields[1].ty, AvroType::Array(items) if matches!(&**items, AvroType::Record(a) if a.name == "ns.actor"))
        );
        assert_eq!(r.fields[2].ty, AvroType::Ref("ns.actor".into()));
        apache_avro::Schema::parse_str(&text).unwrap();
        // Re-serializing the re-parsed schema is stable.
        assert_eq!(Schema::parse(&again.to_json()).unwrap(), again);

        // Any root works, not only records.
        let list = Schema::from_root(AvroType::Array(Box::new(AvroType::Ref("ns.actor".into()))), &input).unwrap();
        let again = Schema::parse(&list.to_json()).unwrap();
        assert!(
            matches!(&again.root, AvroType::Array(items) if matches!(&**items, AvroType::Record(a) if a.name == "ns.actor"))
        );

        // Only the named types it reaches are kept.
        let out = Schema::record("small", vec![rec.fields[2].clone()], &input).unwrap();
        assert_eq!(out.named_types().count(), 1);

        let e = Schema::record("x", vec![Field::new("a", AvroType::Ref("nope".into()))], &input).unwrap_err();
        assert!(e.to_string().contains("unknown type \"nope\""), "{e}");
        let e = Schema::record("x", vec![Field::new("a", AvroType::Int), Field::new("a", AvroType::Int)], &input)
            .unwrap_err();
        assert!(e.to_string().contains("duplicate field"), "{e}");
        assert!(Schema::record("bad name", vec![], &input).is_err());
    }

    #[test]
    fn aliases_docs_and_attributes_survive_round_trip() {
        let s = round_trip(
            r#"{"type": "record", "name": "Movie", "namespace": "films", "aliases": ["Film", "old.Picture"],
                "doc": "A film", "x-owner": {"team": "catalog"}, "fields": [
                {"name": "date", "type": "int", "aliases": ["time", "day"], "order": "descending", "x-pii": false},
                {"name": "genre", "type": {"type": "enum", "name": "Genre", "aliases": ["Kind"], "doc": "kinds",
                    "symbols": ["A", "B"], "x-sort": 1}},
                {"name": "hash", "type": {"type": "fixed", "name": "Md5", "namespace": "", "aliases": ["Digest"],
                    "doc": "sum", "size": 16, "x-algo": "md5"}},
                {"name": "money", "type": {"type": "fixed", "name": "Money", "size": 8, "aliases": ["Cash"],
                    "logicalType": "decimal", "precision": 18, "scale": 4, "x-currency": "EUR"}},
                {"name": "nested", "type": {"type": "record", "name": "Inner", "aliases": ["Old"],
                    "logicalType": "custom", "x-a": 1, "fields": []}}
            ]}"#,
        );
        let rec = s.root_record().unwrap();
        // Short aliases of named types are in the type's namespace; field aliases are names.
        assert_eq!(rec.aliases, ["films.Film", "old.Picture"]);
        assert_eq!(rec.doc.as_deref(), Some("A film"));
        assert_eq!(rec.attributes.len(), 1);
        assert_eq!(rec.attributes["x-owner"]["team"], "catalog");
        assert_eq!(rec.fields[0].aliases, ["time", "day"]);
        assert!(rec.fields[0].answers_to("time") && rec.fields[0].answers_to("date"));
        assert!(!rec.fields[0].answers_to("other"));
        assert_eq!(rec.fields[0].attributes["order"], "descending");
        assert_eq!(rec.fields[0].attributes["x-pii"], false);
        let AvroType::Enum(genre) = &rec.fields[1].ty else { panic!() };
        assert_eq!(genre.aliases, ["films.Kind"]);
        assert_eq!(genre.doc.as_deref(), Some("kinds"));
        assert_eq!(genre.attributes["x-sort"], 1);
        let AvroType::Fixed(md5) = &rec.fields[2].ty else { panic!() };
        assert_eq!((md5.name.as_str(), md5.aliases.as_slice()), ("Md5", &["Digest".to_string()][..]));
        assert_eq!(md5.doc.as_deref(), Some("sum"));
        assert_eq!(md5.attributes["x-algo"], "md5");
        assert_eq!(rec.fields[2].ty.aliases(), ["Digest"]);
        // With a logical type, the wrapper keeps the other attributes; the named type its aliases.
        let AvroType::Logical { base, attributes } = &rec.fields[3].ty else { panic!() };
        assert_eq!(base.aliases(), ["films.Cash"]);
        assert_eq!(rec.fields[3].ty.aliases(), ["films.Cash"]);
        assert!(matches!(&**base, AvroType::Fixed(f) if f.attributes.is_empty()));
        assert_eq!(attributes.len(), 4, "{attributes:?}");
        let AvroType::Logical { base, attributes } = &rec.fields[4].ty else { panic!() };
        assert_eq!(base.aliases(), ["films.Old"]);
        assert_eq!(attributes["x-a"], 1);
        assert_eq!(AvroType::Int.aliases(), &[] as &[String]);
        // Written back as full names, attributes after the type's own keys.
        let json = s.to_json_value();
        assert_eq!(json["aliases"], serde_json::json!(["films.Film", "old.Picture"]));
        assert_eq!(json["fields"][0]["aliases"], serde_json::json!(["time", "day"]));
        assert_eq!(json["fields"][0]["order"], "descending");
        assert_eq!(json["fields"][2]["type"]["x-algo"], "md5");
        // Hand-built attributes cannot overwrite what the type writes itself.
        let mut record = RecordType::new("R", vec![Field::new("a", AvroType::Int)]);
        record.attributes.insert("name".into(), "other".into());
        record.attributes.insert("x".into(), 1.into());
        let built = Schema::from_root(AvroType::Record(Arc::new(record)), &s).unwrap();
        assert_eq!(built.to_json(), r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}],"x":1}"#);
    }

    #[test]
    fn alias_errors() {
        let e = parse_err(r#"{"type": "record", "name": "R", "aliases": "S", "fields": []}"#);
        assert!(e.contains(r#""aliases" of "R" must be an array"#), "{e}");
        let e = parse_err(r#"{"type": "enum", "name": "n.E", "aliases": [1], "symbols": []}"#);
        assert!(e.contains(r#"an alias of "n.E" is a number"#), "{e}");
        let e = parse_err(r#"{"type": "fixed", "name": "F", "aliases": ["a-b"], "size": 1}"#);
        assert!(e.contains(r#"invalid alias "a-b" of "F""#), "{e}");
        let e = parse_err(
            r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "aliases": ["x.y"]}]}"#,
        );
        assert!(e.contains(r#"invalid alias "x.y" of field "R.a""#), "{e}");
    }

    #[test]
    fn the_same_definition_twice_is_one_definition() {
        let input = parse(
            r#"{"type": "record", "name": "n.Movie", "doc": "one", "fields": [
                {"name": "id", "type": "long"},
                {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["A"]}}
            ]}"#,
        );
        let other_doc = parse(
            r#"{"type": "record", "name": "n.Movie", "doc": "two", "aliases": ["n.Film"], "fields": [
                {"name": "id", "type": {"type": "long"}},
                {"name": "genre", "type": {"type": "enum", "name": "n.Genre", "doc": "g", "symbols": ["A"]}}
            ]}"#,
        );
        assert_ne!(input, other_doc);
        assert!(input.same_as(&other_doc));
        let both = Schema::record(
            "n.Pair",
            vec![
                Field::new("a", input.root.clone()),
                Field::new("b", AvroType::Union(vec![AvroType::Null, other_doc.root.clone()])),
            ],
            &input,
        )
        .unwrap();
        // Defined at its first use (the first definition, doc and all), named at the second.
        let text = both.to_json();
        assert_eq!(text.matches("\"type\":\"record\",\"name\":\"n.Movie\"").count(), 1, "{text}");
        assert!(text.contains("\"doc\":\"one\"") && !text.contains("\"doc\":\"two\""), "{text}");
        let again = parse(&text);
        assert!(again.same_as(&both));
        apache_avro::Schema::parse_str(&text).unwrap();

        // Different definitions under one name stay an error, also of a type inside.
        let different = parse(
            r#"{"type": "record", "name": "n.Movie", "fields": [
                {"name": "id", "type": "long"},
                {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["A", "B"]}}
            ]}"#,
        );
        let e = Schema::record(
            "n.Pair",
            vec![Field::new("a", input.root.clone()), Field::new("b", different.root.clone())],
            &input,
        )
        .unwrap_err();
        assert!(e.to_string().contains("type \"n.Genre\" is defined twice, differently"), "{e}");
    }

    #[test]
    fn null_namespace_inside_namespace_survives_round_trip() {
        let s = round_trip(
            r#"{"type": "record", "name": "a.b.R", "fields": [
                {"name": "x", "type": {"type": "record", "name": "S", "namespace": "", "fields": []}},
                {"name": "y", "type": {"type": "record", "name": "T", "fields": [{"name": "s", "type": "S"}]}}
            ]}"#,
        );
        let rec = s.root_record().unwrap();
        assert_eq!(rec.fields[0].ty.name(), Some("S"));
        assert_eq!(rec.fields[1].ty.name(), Some("a.b.T"));
    }
}
