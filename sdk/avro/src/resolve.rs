//! Avro schema resolution (Avro 1.11, "Schema Resolution"): reading a datum written with one
//! schema (the *writer's*) as a datum of another (the *reader's*).
//!
//! A [`Resolver`] is built once per pair of schemas. Building it checks that every type the
//! writer can produce can be read by the reader, and fails with a [`ResolveError`] that names
//! the field (`field "rating": writer type string cannot be read as double`). Then
//! [`Resolver::convert`] turns writer datums into reader datums, byte to byte, without building
//! [`Value`](super::Value)s:
//!
//! - record fields are matched by name, then by the reader field's aliases (a writer field
//!   that some reader field has by name is not taken by another's alias); the writer's fields
//!   are read in the writer's order,
//!   the ones the reader does not have are skipped, and the reader's fields the writer lacks
//!   take the reader field's default (for a union, a value of its *first* branch, as the spec
//!   says);
//! - records, enums and fixed types match by unqualified name (the spec's "same (unqualified)
//!   name"), or when the writer's full name is one of the reader type's aliases (which the
//!   parser has made full names);
//! - `int` is promoted to `long`, `float` or `double`, `long` to `float` or `double`, `float`
//!   to `double`; `string` and `bytes` read as each other (bytes read as a string must be
//!   UTF-8);
//! - an enum symbol the reader does not have becomes the reader enum's `default` (never the
//!   reader *field's* default); without an enum default, a writer enum with symbols the reader
//!   lacks cannot be read (the spec's error; [`Resolver::new`] refuses the pair, as compatibility
//!   checkers do, and [`Resolver::new_partial`] fails the datums that use such a symbol);
//! - a writer union resolves the branch each datum uses; a reader union takes the first branch
//!   of the same type (for a named type: of the same full name, then of the same unqualified
//!   name, then one with the writer's full name among its aliases), else the first branch the
//!   writer's type promotes to;
//! - logical types resolve as their underlying types;
//! - parts of the schemas that are identical are copied as bytes, and identical schemas copy
//!   the whole datum.
//!
//! [`Resolver::new`] asks that *every* value of the writer's schema be readable, as schema
//! compatibility checkers do: every branch of a writer union, every symbol of a writer enum
//! (unless the reader's enum has a default). Then only bytes that are not UTF-8 read as a
//! string can make a valid datum fail. [`Resolver::new_partial`] applies the spec's rules per
//! datum instead: it accepts writer unions with some unreadable branches and writer enums with
//! symbols the reader lacks, and a datum that uses one fails to convert.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::Value as Json;

use super::datum::{encode, encoding_type, skip, write_long, DatumError, DatumErrorKind, Reader, MAX_DEPTH};
use super::json::from_json;
use super::schema::{AvroType, EnumType, RecordType, Schema};

/// Why a writer schema cannot be read with a reader schema, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    path: String,
    message: String,
}

impl ResolveError {
    /// The path of the field in the reader's schema (`director.born`, `cast[].age`,
    /// `awards{}`: `[]` stands for array items, `{}` for map values); empty at the top level.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "field \"{}\": {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ResolveError {}

/// Converts datums of a writer schema into datums of a reader schema (see the [module
/// docs](self)).
#[derive(Debug, Clone)]
pub struct Resolver {
    writer: Schema,
    reader: Schema,
    /// The schemas are the same: datums are copied as they are.
    identical: bool,
    root: Action,
    /// The record conversions, which [`Action::Record`] indexes (so that recursive types
    /// resolve to a finite plan).
    records: Vec<RecordPlan>,
}

/// What to do with one value of the writer's type.
#[derive(Debug, Clone)]
enum Action {
    /// The encoding is the same for the reader: skip the value (of this writer type) and copy
    /// its bytes.
    Copy(AvroType),
    IntToFloat,
    IntToDouble,
    LongToFloat,
    LongToDouble,
    FloatToDouble,
    /// Copy, after checking the bytes are UTF-8.
    BytesToString,
    Enum(Box<EnumPlan>),
    Array(Box<Action>, Items),
    Map(Box<Action>),
    /// Index into [`Resolver::records`].
    Record(usize),
    /// The writer's union: one action per writer branch.
    WriterUnion(Vec<Action>),
    /// A non-union writer type read as this branch of the reader's union.
    ReaderUnion(u32, Box<Action>),
    /// A writer union branch the reader cannot read ([`Resolver::new_partial`]).
    Fail(String),
}

/// Whether the items of an array can encode to no bytes at all (which bounds item counts).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Items {
    TakeBytes,
    MayBeEmpty,
}

#[derive(Debug, Clone)]
struct EnumPlan {
    reader: String,
    /// For each writer symbol: the reader's symbol index, if it has one (or a default).
    map: Vec<(String, Option<u32>)>,
}

#[derive(Debug, Clone, Default)]
struct RecordPlan {
    /// The writer's fields, in the writer's order.
    fields: Vec<FieldStep>,
    /// The reader's fields, in the reader's order.
    layout: Vec<Piece>,
    /// The writer fields the reader keeps come in the reader's order: the output is written as
    /// the input is read, with no scratch buffer.
    in_order: bool,
}

#[derive(Debug, Clone)]
struct FieldStep {
    name: String,
    step: Step,
}

#[derive(Debug, Clone)]
enum Step {
    /// A field the reader does not have: skip a value of this writer type.
    Skip(AvroType),
    /// A field the reader has.
    Read(Action),
}

#[derive(Debug, Clone)]
enum Piece {
    /// The value of the writer's field at this index.
    Writer(usize),
    /// The encoded default.
    Default(Vec<u8>),
}

/// Items an array or map may hold beyond one per byte of the datum (the same allowance as
/// the datum reader's: items that encode to nothing cannot make a tiny datum huge).
const ZERO_SIZE_ALLOWANCE: usize = 1 << 16;

impl Resolver {
    /// A resolver from `writer` to `reader`, checking that every value the writer schema
    /// allows can be read: a writer enum with symbols the reader's enum lacks needs a `default`
    /// on the reader's enum.
    pub fn new(writer: &Schema, reader: &Schema) -> Result<Resolver, ResolveError> {
        Resolver::build(writer, reader, true)
    }

    /// Like [`Resolver::new`], but a writer union may have branches the reader cannot read,
    /// and a writer enum symbols the reader's enum lacks with no default (the spec's rule: it
    /// is an error only when a datum uses one); such a datum fails to convert. At least one
    /// branch of each writer union must be readable.
    pub fn new_partial(writer: &Schema, reader: &Schema) -> Result<Resolver, ResolveError> {
        Resolver::build(writer, reader, false)
    }

    fn build(writer: &Schema, reader: &Schema, strict: bool) -> Result<Resolver, ResolveError> {
        // Same canonical form: the same encoding, whatever the docs, aliases or defaults.
        let identical = writer.same_as(reader);
        let mut builder =
            Builder { writer, reader, strict, records: Vec::new(), memo: HashMap::new(), path: Vec::new() };
        let root =
            if identical { Action::Copy(writer.root.clone()) } else { builder.build(&writer.root, &reader.root)? };
        Ok(Resolver { writer: writer.clone(), reader: reader.clone(), identical, root, records: builder.records })
    }

    /// The writer's schema.
    pub fn writer(&self) -> &Schema {
        &self.writer
    }

    /// The reader's schema.
    pub fn reader(&self) -> &Schema {
        &self.reader
    }

    /// Whether the two schemas are the same, so that [`Resolver::convert`] copies datums as
    /// they are (without looking at them).
    pub fn is_identity(&self) -> bool {
        self.identical
    }

    /// The reader's datum for `bytes`, which must be exactly one datum of the writer's schema.
    pub fn convert(&self, bytes: &[u8]) -> Result<Vec<u8>, DatumError> {
        let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 8 + 8);
        self.convert_into(bytes, &mut out)?;
        Ok(out)
    }

    /// [`Resolver::convert`], appending to `out`. On error, `out` is left as it was.
    pub fn convert_into(&self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), DatumError> {
        if self.identical {
            out.extend_from_slice(bytes);
            return Ok(());
        }
        let start = out.len();
        let mut run = Run { resolver: self, buf: bytes, budget: bytes.len().saturating_add(ZERO_SIZE_ALLOWANCE) };
        let mut r = Reader::new(bytes);
        let result = run.action(&self.root, &mut r, out, 0).and_then(|()| {
            if r.is_at_end() {
                Ok(())
            } else {
                Err(DatumError::new(DatumErrorKind::TrailingBytes(r.remaining()), Some(r.position())))
            }
        });
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

/// A segment of a [`ResolveError`] path.
enum Segment {
    Field(String),
    Items,
    Values,
}

struct Builder<'a> {
    writer: &'a Schema,
    reader: &'a Schema,
    strict: bool,
    records: Vec<RecordPlan>,
    /// (writer record, reader record) full names → index in `records`.
    memo: HashMap<(String, String), usize>,
    path: Vec<Segment>,
}

/// The name without its namespace.
fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// Whether a reader's named type (full name `reader`, `aliases`) reads the writer's named type
/// of full name `writer`: the same unqualified name, or the writer's full name is an alias.
fn names_match(writer: &str, reader: &str, aliases: &[String]) -> bool {
    short(writer) == short(reader) || aliases.iter().any(|a| a == writer)
}

/// Whether a value of `w` can be promoted to `r` (both encoding types).
fn promotes(w: &AvroType, r: &AvroType) -> bool {
    use AvroType as T;
    matches!(
        (w, r),
        (T::Int, T::Long | T::Float | T::Double)
            | (T::Long, T::Float | T::Double)
            | (T::Float, T::Double)
            | (T::String, T::Bytes)
            | (T::Bytes, T::String)
    )
}

fn describe_union(branches: &[AvroType]) -> String {
    let names: Vec<String> = branches.iter().map(AvroType::describe).collect();
    format!("[{}]", names.join(", "))
}

impl<'a> Builder<'a> {
    fn error(&self, message: impl Into<String>) -> ResolveError {
        let mut path = String::new();
        for segment in &self.path {
            match segment {
                Segment::Field(name) if path.is_empty() => path.push_str(name),
                Segment::Field(name) => {
                    path.push('.');
                    path.push_str(name);
                }
                Segment::Items => path.push_str("[]"),
                Segment::Values => path.push_str("{}"),
            }
        }
        ResolveError { path, message: message.into() }
    }

    fn writer_type(&self, ty: &'a AvroType) -> Result<&'a AvroType, ResolveError> {
        encoding_type(self.writer, ty).map_err(|e| self.error(format!("writer schema: {}", e.kind())))
    }

    fn reader_type(&self, ty: &'a AvroType) -> Result<&'a AvroType, ResolveError> {
        encoding_type(self.reader, ty).map_err(|e| self.error(format!("reader schema: {}", e.kind())))
    }

    /// Runs `f` with `segment` pushed on the path.
    fn at<T>(&mut self, segment: Segment, f: impl FnOnce(&mut Self) -> T) -> T {
        self.path.push(segment);
        let result = f(self);
        self.path.pop();
        result
    }

    fn build(&mut self, w: &'a AvroType, r: &'a AvroType) -> Result<Action, ResolveError> {
        use AvroType as T;
        let w = self.writer_type(w)?;
        let r = self.reader_type(r)?;
        if self.identical(w, r, &mut HashSet::new()) {
            return Ok(Action::Copy(w.clone()));
        }
        Ok(match (w, r) {
            (T::Union(branches), _) => self.writer_union(branches, r)?,
            (_, T::Union(branches)) => self.reader_union(w, branches)?,
            // An int's varint is also a valid long's.
            (T::Int, T::Long) => Action::Copy(T::Int),
            (T::Int, T::Float) => Action::IntToFloat,
            (T::Int, T::Double) => Action::IntToDouble,
            (T::Long, T::Float) => Action::LongToFloat,
            (T::Long, T::Double) => Action::LongToDouble,
            (T::Float, T::Double) => Action::FloatToDouble,
            (T::String, T::Bytes) => Action::Copy(T::String),
            (T::Bytes, T::String) => Action::BytesToString,
            (T::Record(wr), T::Record(rr)) => self.record(wr, rr)?,
            (T::Enum(we), T::Enum(re)) => self.enumeration(we, re)?,
            (T::Fixed(wf), T::Fixed(rf)) => {
                if !names_match(&wf.name, &rf.name, &rf.aliases) {
                    return Err(self.error(format!(
                        "writer fixed \"{}\" cannot be read as fixed \"{}\": the names differ",
                        wf.name, rf.name
                    )));
                }
                if wf.size == rf.size {
                    // Read through an alias.
                    return Ok(Action::Copy(w.clone()));
                }
                // The names match, so the sizes differ.
                return Err(self.error(format!(
                    "writer fixed \"{}\" has {} bytes, reader fixed \"{}\" has {}",
                    wf.name, wf.size, rf.name, rf.size
                )));
            }
            (T::Array(wi), T::Array(ri)) => {
                let items = self.at(Segment::Items, |b| b.build(wi, ri))?;
                let empty = if self.may_be_empty(wi, 0) { Items::MayBeEmpty } else { Items::TakeBytes };
                Action::Array(Box::new(items), empty)
            }
            (T::Map(wv), T::Map(rv)) => Action::Map(Box::new(self.at(Segment::Values, |b| b.build(wv, rv))?)),
            _ => return Err(self.error(format!("writer type {} cannot be read as {}", w.describe(), r.describe()))),
        })
    }

    /// Whether the writer types `w` and reader type `r` encode every value the same way, and
    /// resolve to each other: a value can be copied. Records met again are assumed identical
    /// (the check of their first meeting decides).
    fn identical(&self, w: &AvroType, r: &AvroType, assumed: &mut HashSet<(String, String)>) -> bool {
        use AvroType as T;
        let (Ok(w), Ok(r)) = (encoding_type(self.writer, w), encoding_type(self.reader, r)) else {
            return false;
        };
        match (w, r) {
            (T::Null, T::Null)
            | (T::Boolean, T::Boolean)
            | (T::Int, T::Int)
            | (T::Long, T::Long)
            | (T::Float, T::Float)
            | (T::Double, T::Double)
            | (T::Bytes, T::Bytes)
            | (T::String, T::String) => true,
            (T::Fixed(a), T::Fixed(b)) => a.size == b.size && names_match(&a.name, &b.name, &b.aliases),
            (T::Enum(a), T::Enum(b)) => names_match(&a.name, &b.name, &b.aliases) && a.symbols == b.symbols,
            (T::Array(a), T::Array(b)) | (T::Map(a), T::Map(b)) => self.identical(a, b, assumed),
            (T::Union(a), T::Union(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| self.identical(x, y, assumed))
            }
            (T::Record(a), T::Record(b)) => {
                if !names_match(&a.name, &b.name, &b.aliases) {
                    return false;
                }
                if !assumed.insert((a.name.clone(), b.name.clone())) {
                    return true;
                }
                a.fields.len() == b.fields.len()
                    && a.fields
                        .iter()
                        .zip(&b.fields)
                        .all(|(x, y)| x.name == y.name && self.identical(&x.ty, &y.ty, assumed))
            }
            _ => false,
        }
    }

    /// Whether a value of writer type `ty` can take no bytes (a lower bound is enough).
    fn may_be_empty(&self, ty: &AvroType, depth: usize) -> bool {
        let Ok(ty) = encoding_type(self.writer, ty) else {
            return true;
        };
        match ty {
            AvroType::Null => true,
            AvroType::Fixed(f) => f.size == 0,
            AvroType::Record(r) if depth < 8 => r.fields.iter().all(|f| self.may_be_empty(&f.ty, depth + 1)),
            AvroType::Record(_) => true,
            _ => false,
        }
    }

    fn writer_union(&mut self, branches: &'a [AvroType], r: &'a AvroType) -> Result<Action, ResolveError> {
        let mut actions = Vec::with_capacity(branches.len());
        let mut first_error = None;
        for (i, branch) in branches.iter().enumerate() {
            match self.build(branch, r) {
                Ok(action) => actions.push(action),
                Err(e) if self.strict => return Err(e),
                Err(e) => {
                    actions.push(Action::Fail(format!(
                        "writer union branch {i} ({}) cannot be read: {e}",
                        branch.describe()
                    )));
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if actions.iter().all(|a| matches!(a, Action::Fail(_))) => Err(e),
            _ => Ok(Action::WriterUnion(actions)),
        }
    }

    /// A non-union writer type `w` read as a reader union.
    fn reader_union(&mut self, w: &'a AvroType, branches: &'a [AvroType]) -> Result<Action, ResolveError> {
        use AvroType as T;
        let resolved: Vec<Option<&'a AvroType>> = branches.iter().map(|b| encoding_type(self.reader, b).ok()).collect();
        /// How a named branch must match the writer's named type.
        #[derive(Clone, Copy)]
        enum By {
            FullName,
            ShortName,
            Alias,
        }
        let same_kind = |b: &AvroType, by: By| -> bool {
            match (w, b) {
                (T::Record(_), T::Record(_)) | (T::Enum(_), T::Enum(_)) | (T::Fixed(_), T::Fixed(_)) => {
                    let (wn, bn) = (w.name().unwrap_or(""), b.name().unwrap_or(""));
                    match by {
                        By::FullName => wn == bn,
                        By::ShortName => short(wn) == short(bn),
                        By::Alias => b.aliases().iter().any(|a| a == wn),
                    }
                }
                (T::Array(_), T::Array(_)) | (T::Map(_), T::Map(_)) => true,
                _ => std::mem::discriminant(w) == std::mem::discriminant(b),
            }
        };
        // Exact matches first (by full name, by unqualified name, by alias), then promotions.
        let mut candidates: Vec<usize> = Vec::new();
        let passes: [&dyn Fn(&AvroType) -> bool; 4] =
            [&|b| same_kind(b, By::FullName), &|b| same_kind(b, By::ShortName), &|b| same_kind(b, By::Alias), &|b| {
                promotes(w, b)
            }];
        for pass in passes {
            for (i, b) in resolved.iter().enumerate() {
                if b.is_some_and(pass) && !candidates.contains(&i) {
                    candidates.push(i);
                }
            }
        }
        let mut first_error = None;
        for &i in &candidates {
            match self.build(w, &branches[i]) {
                Ok(action) => return Ok(Action::ReaderUnion(i as u32, Box::new(action))),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| {
            self.error(format!(
                "writer type {} matches no branch of reader union {}",
                w.describe(),
                describe_union(branches)
            ))
        }))
    }

    fn enumeration(&mut self, we: &EnumType, re: &EnumType) -> Result<Action, ResolveError> {
        if !names_match(&we.name, &re.name, &re.aliases) {
            return Err(self.error(format!(
                "writer enum \"{}\" cannot be read as enum \"{}\": the names differ",
                we.name, re.name
            )));
        }
        // The reader enum's own default, never a field's default.
        let default = re.default.as_ref().and_then(|d| re.symbols.iter().position(|s| s == d));
        if self.strict && default.is_none() {
            let missing: Vec<&str> =
                we.symbols.iter().filter(|s| !re.symbols.contains(s)).map(String::as_str).collect();
            if !missing.is_empty() {
                return Err(self.error(format!(
                    "writer enum \"{}\" has symbols that reader enum \"{}\" lacks ({}), and the reader's enum has no default",
                    we.name,
                    re.name,
                    missing.join(", ")
                )));
            }
        }
        let map = we
            .symbols
            .iter()
            .map(|s| {
                let index = re.symbols.iter().position(|x| x == s).or(default);
                (s.clone(), index.map(|i| i as u32))
            })
            .collect();
        Ok(Action::Enum(Box::new(EnumPlan { reader: re.name.clone(), map })))
    }

    fn record(&mut self, wr: &'a RecordType, rr: &'a RecordType) -> Result<Action, ResolveError> {
        if !names_match(&wr.name, &rr.name, &rr.aliases) {
            return Err(self.error(format!(
                "writer record \"{}\" cannot be read as record \"{}\": the names differ",
                wr.name, rr.name
            )));
        }
        let key = (wr.name.clone(), rr.name.clone());
        if let Some(&index) = self.memo.get(&key) {
            return Ok(Action::Record(index));
        }
        // Claim the index first, so that a recursive use of this pair finds it.
        let index = self.records.len();
        self.records.push(RecordPlan::default());
        self.memo.insert(key, index);
        match self.record_plan(wr, rr) {
            Ok(plan) => {
                self.records[index] = plan;
                Ok(Action::Record(index))
            }
            Err(e) => {
                // Plans made since may refer to this unfinished one: drop them all.
                self.records.truncate(index);
                self.memo.retain(|_, i| *i < index);
                Err(e)
            }
        }
    }

    fn record_plan(&mut self, wr: &'a RecordType, rr: &'a RecordType) -> Result<RecordPlan, ResolveError> {
        let mut fields: Vec<FieldStep> =
            wr.fields.iter().map(|f| FieldStep { name: f.name.clone(), step: Step::Skip(f.ty.clone()) }).collect();
        // The writer field each reader field reads: by name, else by an alias, among the
        // writer fields no reader field has by name.
        let by_name: Vec<Option<usize>> = rr.fields.iter().map(|rf| wr.field(&rf.name).map(|(k, _)| k)).collect();
        let mut claimed: Vec<bool> = vec![false; wr.fields.len()];
        for k in by_name.iter().flatten() {
            claimed[*k] = true;
        }
        let mut sources = Vec::with_capacity(rr.fields.len());
        for (rf, by_name) in rr.fields.iter().zip(by_name) {
            let source = by_name.or_else(|| {
                let k =
                    wr.fields.iter().enumerate().position(|(k, wf)| !claimed[k] && rf.aliases.contains(&wf.name))?;
                claimed[k] = true;
                Some(k)
            });
            sources.push(source);
        }
        let mut layout = Vec::with_capacity(rr.fields.len());
        for (rf, source) in rr.fields.iter().zip(sources) {
            let piece = self.at(Segment::Field(rf.name.clone()), |b| match source.map(|k| (k, &wr.fields[k])) {
                Some((k, wf)) => {
                    fields[k].step = Step::Read(b.build(&wf.ty, &rf.ty)?);
                    Ok(Piece::Writer(k))
                }
                None => match &rf.default {
                    Some(default) => {
                        encode_default(b.reader, &rf.ty, default).map(Piece::Default).map_err(|m| b.error(m))
                    }
                    None => {
                        Err(b.error("the writer schema has no such field, and the reader schema gives it no default"))
                    }
                },
            })?;
            layout.push(piece);
        }
        let order: Vec<usize> = layout
            .iter()
            .filter_map(|p| match p {
                Piece::Writer(k) => Some(*k),
                Piece::Default(_) => None,
            })
            .collect();
        let in_order = order.windows(2).all(|w| w[0] < w[1]);
        Ok(RecordPlan { fields, layout, in_order })
    }
}

/// The encoding of a reader field's default (JSON, as in the schema) as a value of `ty`; for
/// a union, of its first branch.
fn encode_default(schema: &Schema, ty: &AvroType, default: &Json) -> Result<Vec<u8>, String> {
    let base = encoding_type(schema, ty).map_err(|e| e.kind().to_string())?;
    let mut out = Vec::new();
    let value_ty = match base {
        AvroType::Union(branches) => {
            let Some(first) = branches.first() else {
                return Err("the writer schema has no such field, and its type (an empty union) has no default".into());
            };
            write_long(&mut out, 0);
            first
        }
        _ => ty,
    };
    let value = from_json(schema, value_ty, default).map_err(|e| {
        if matches!(base, AvroType::Union(_)) {
            format!(
                "the writer schema has no such field, and the default {default} does not fit the first branch ({}) of the reader's union: {e}",
                value_ty.describe()
            )
        } else {
            format!("the writer schema has no such field, and the default {default} does not fit: {e}")
        }
    })?;
    encode(schema, value_ty, &value, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The state of one conversion.
struct Run<'r, 'b> {
    resolver: &'r Resolver,
    buf: &'b [u8],
    /// Array and map items left (see [`ZERO_SIZE_ALLOWANCE`]).
    budget: usize,
}

impl Run<'_, '_> {
    fn action(&mut self, action: &Action, r: &mut Reader, out: &mut Vec<u8>, depth: usize) -> Result<(), DatumError> {
        match action {
            Action::Copy(ty) => {
                let start = r.position();
                skip(&self.resolver.writer, ty, r)?;
                out.extend_from_slice(&self.buf[start..r.position()]);
            }
            Action::IntToFloat => out.extend_from_slice(&(r.read_int()? as f32).to_le_bytes()),
            Action::IntToDouble => out.extend_from_slice(&f64::from(r.read_int()?).to_le_bytes()),
            Action::LongToFloat => out.extend_from_slice(&(r.read_long()? as f32).to_le_bytes()),
            Action::LongToDouble => out.extend_from_slice(&(r.read_long()? as f64).to_le_bytes()),
            Action::FloatToDouble => out.extend_from_slice(&f64::from(r.read_float()?).to_le_bytes()),
            Action::BytesToString => {
                let start = r.position();
                let bytes = r.read_bytes()?;
                if std::str::from_utf8(bytes).is_err() {
                    return Err(DatumError::new(DatumErrorKind::InvalidUtf8, Some(start)));
                }
                out.extend_from_slice(&self.buf[start..r.position()]);
            }
            Action::Enum(plan) => {
                let start = r.position();
                let i = r.read_enum_index(plan.map.len())?;
                match &plan.map[i] {
                    (_, Some(index)) => write_long(out, i64::from(*index)),
                    (symbol, None) => {
                        return Err(DatumError::new(
                            DatumErrorKind::Invalid(format!(
                                "symbol \"{symbol}\" is not in reader enum \"{}\", which has no default",
                                plan.reader
                            )),
                            Some(start),
                        ))
                    }
                }
            }
            Action::Array(items, empty) => self.array(items, *empty, r, out, depth)?,
            Action::Map(values) => self.map(values, r, out, depth)?,
            Action::Record(index) => self.record(*index, r, out, depth)?,
            Action::WriterUnion(branches) => {
                let start = r.position();
                let i = r.read_union_index(branches.len())?;
                match &branches[i] {
                    Action::Fail(message) => {
                        return Err(DatumError::new(DatumErrorKind::Invalid(message.clone()), Some(start)))
                    }
                    branch => self.action(branch, r, out, depth)?,
                }
            }
            Action::ReaderUnion(index, action) => {
                write_long(out, i64::from(*index));
                self.action(action, r, out, depth)?;
            }
            Action::Fail(message) => {
                return Err(DatumError::new(DatumErrorKind::Invalid(message.clone()), Some(r.position())))
            }
        }
        Ok(())
    }

    /// Reads an array or map block header: (item count, byte size if given); charges the
    /// count to the budget and checks it against the bytes left.
    fn block(&mut self, r: &mut Reader, empty: Items) -> Result<(usize, Option<usize>), DatumError> {
        let start = r.position();
        let count = r.read_long()?;
        if count == 0 {
            return Ok((0, None));
        }
        let size = if count < 0 { Some(r.read_len()?) } else { None };
        let count = count.unsigned_abs();
        let remaining = r.remaining();
        let room = size.unwrap_or(remaining);
        if count > self.budget as u64 || (count > room as u64 && empty == Items::TakeBytes) {
            return Err(DatumError::new(DatumErrorKind::CountTooLarge { count, remaining }, Some(start)));
        }
        self.budget -= count as usize;
        Ok((count as usize, size))
    }

    fn check_size(size: Option<usize>, start: usize, end: usize) -> Result<(), DatumError> {
        match size {
            Some(declared) if declared != end - start => {
                Err(DatumError::new(DatumErrorKind::BlockSizeMismatch { declared, actual: end - start }, Some(start)))
            }
            _ => Ok(()),
        }
    }

    #[inline(never)]
    fn array(
        &mut self,
        items: &Action,
        empty: Items,
        r: &mut Reader,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), DatumError> {
        let mut index = 0;
        loop {
            let (count, size) = self.block(r, empty)?;
            if count == 0 {
                out.push(0);
                return Ok(());
            }
            write_long(out, count as i64);
            let start = r.position();
            for _ in 0..count {
                self.action(items, r, out, depth).map_err(|e| e.at_index(index))?;
                index += 1;
            }
            Self::check_size(size, start, r.position())?;
        }
    }

    #[inline(never)]
    fn map(&mut self, values: &Action, r: &mut Reader, out: &mut Vec<u8>, depth: usize) -> Result<(), DatumError> {
        loop {
            // Map entries are never empty: the key's length takes a byte.
            let (count, size) = self.block(r, Items::TakeBytes)?;
            if count == 0 {
                out.push(0);
                return Ok(());
            }
            write_long(out, count as i64);
            let start = r.position();
            for _ in 0..count {
                let key_start = r.position();
                let key = r.read_str()?;
                out.extend_from_slice(&self.buf[key_start..r.position()]);
                self.action(values, r, out, depth).map_err(|e| e.at_key(key))?;
            }
            Self::check_size(size, start, r.position())?;
        }
    }

    fn skip_field(&self, field: &FieldStep, ty: &AvroType, r: &mut Reader) -> Result<(), DatumError> {
        skip(&self.resolver.writer, ty, r).map_err(|e| e.in_field(&field.name))
    }

    #[inline(never)]
    fn record(&mut self, index: usize, r: &mut Reader, out: &mut Vec<u8>, depth: usize) -> Result<(), DatumError> {
        if depth >= MAX_DEPTH {
            return Err(DatumError::new(DatumErrorKind::TooDeep, Some(r.position())));
        }
        let resolver = self.resolver;
        let plan = &resolver.records[index];
        if plan.in_order {
            let mut next = 0;
            for piece in &plan.layout {
                match piece {
                    Piece::Default(bytes) => out.extend_from_slice(bytes),
                    Piece::Writer(k) => {
                        while next <= *k {
                            let field = &plan.fields[next];
                            match &field.step {
                                Step::Skip(ty) => self.skip_field(field, ty, r)?,
                                Step::Read(action) => {
                                    self.action(action, r, out, depth + 1).map_err(|e| e.in_field(&field.name))?
                                }
                            }
                            next += 1;
                        }
                    }
                }
            }
            for field in &plan.fields[next..] {
                match &field.step {
                    Step::Skip(ty) => self.skip_field(field, ty, r)?,
                    Step::Read(_) => unreachable!("every field read is in the layout"),
                }
            }
        } else {
            let mut scratch = Vec::new();
            let mut ranges = vec![0..0; plan.fields.len()];
            for (k, field) in plan.fields.iter().enumerate() {
                match &field.step {
                    Step::Skip(ty) => self.skip_field(field, ty, r)?,
                    Step::Read(action) => {
                        let start = scratch.len();
                        self.action(action, r, &mut scratch, depth + 1).map_err(|e| e.in_field(&field.name))?;
                        ranges[k] = start..scratch.len();
                    }
                }
            }
            for piece in &plan.layout {
                match piece {
                    Piece::Default(bytes) => out.extend_from_slice(bytes),
                    Piece::Writer(k) => out.extend_from_slice(&scratch[ranges[*k].clone()]),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::tests::{from_apache, normalize};
    use crate::{decode_datum, encode_datum, Value};

    fn parse(text: &str) -> Schema {
        Schema::parse(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// A small deterministic random source.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A random value of `ty`. Strings and bytes are ASCII (bytes may be read as strings);
    /// past a small depth, unions take their first branch and arrays and maps are empty, so
    /// recursive types end.
    fn arbitrary(schema: &Schema, ty: &AvroType, rng: &mut Rng, depth: usize) -> Value {
        let ty = encoding_type(schema, ty).unwrap();
        let text = |rng: &mut Rng| -> String {
            let len = rng.below(6);
            (0..len).map(|_| (b'a' + rng.below(26) as u8) as char).collect()
        };
        match ty {
            AvroType::Null => Value::Null,
            AvroType::Boolean => Value::Boolean(rng.below(2) == 1),
            AvroType::Int => Value::Int(match rng.below(4) {
                0 => i32::MAX,
                1 => i32::MIN,
                _ => rng.next() as i32 >> rng.below(31),
            }),
            AvroType::Long => Value::Long(match rng.below(4) {
                0 => i64::MAX,
                1 => i64::MIN,
                _ => rng.next() as i64 >> rng.below(63),
            }),
            AvroType::Float => Value::Float((rng.next() as i32) as f32 / 1024.0),
            AvroType::Double => Value::Double((rng.next() as i64) as f64 / 1e6),
            AvroType::Bytes => Value::Bytes(text(rng).into_bytes()),
            AvroType::String => Value::String(text(rng)),
            AvroType::Fixed(f) => Value::Fixed((0..f.size).map(|_| rng.next() as u8).collect()),
            AvroType::Enum(e) => {
                let i = rng.below(e.symbols.len());
                Value::Enum(i as u32, e.symbols[i].clone())
            }
            AvroType::Array(items) => {
                let n = if depth > 3 { 0 } else { rng.below(4) };
                Value::Array((0..n).map(|_| arbitrary(schema, items, rng, depth + 1)).collect())
            }
            AvroType::Map(values) => {
                let n = if depth > 3 { 0 } else { rng.below(4) };
                let mut entries: Vec<(String, Value)> = Vec::new();
                for i in 0..n {
                    entries.push((format!("k{i}{}", text(rng)), arbitrary(schema, values, rng, depth + 1)));
                }
                Value::Map(entries)
            }
            AvroType::Record(r) => Value::Record(
                r.fields.iter().map(|f| (f.name.clone(), arbitrary(schema, &f.ty, rng, depth + 1))).collect(),
            ),
            AvroType::Union(branches) => {
                let i = if depth > 3 { 0 } else { rng.below(branches.len()) };
                Value::Union(i as u32, Box::new(arbitrary(schema, &branches[i], rng, depth + 1)))
            }
            AvroType::Ref(_) | AvroType::Logical { .. } => unreachable!("resolved above"),
        }
    }

    /// What apache-avro makes of `bytes` (a datum of `writer`) read with `reader`, as our value.
    fn oracle(writer: &str, reader: &str, ours: &Schema, bytes: &[u8]) -> Result<Value, String> {
        let w = apache_avro::Schema::parse_str(writer).unwrap();
        let r = apache_avro::Schema::parse_str(reader).unwrap();
        let mut input = bytes;
        let value = apache_avro::from_avro_datum(&w, &mut input, Some(&r)).map_err(|e| e.to_string())?;
        assert!(input.is_empty(), "apache-avro left bytes over");
        Ok(normalize(from_apache(ours, &ours.root, value)))
    }

    /// Converts `values` (and `random` random values) of `writer` and checks each against
    /// apache-avro's resolution.
    fn check_values(writer: &str, reader: &str, values: &[Value], random: usize) -> Resolver {
        let (w, r) = (parse(writer), parse(reader));
        let resolver = Resolver::new(&w, &r).unwrap_or_else(|e| panic!("{e}\nwriter {writer}\nreader {reader}"));
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut all = values.to_vec();
        all.extend((0..random).map(|_| arbitrary(&w, &w.root, &mut rng, 0)));
        for value in &all {
            let bytes = encode_datum(&w, value).unwrap();
            let converted =
                resolver.convert(&bytes).unwrap_or_else(|e| panic!("{e}: {value:?}\nwriter {writer}\nreader {reader}"));
            let ours = normalize(decode_datum(&r, &converted).unwrap_or_else(|e| panic!("{e}: converted {value:?}")));
            let theirs = oracle(writer, reader, &r, &bytes).unwrap_or_else(|e| panic!("apache-avro: {e}: {value:?}"));
            assert_eq!(ours, theirs, "{value:?}\nwriter {writer}\nreader {reader}");
        }
        resolver
    }

    fn check(writer: &str, reader: &str) -> Resolver {
        check_values(writer, reader, &[], 200)
    }

    fn error(writer: &str, reader: &str) -> String {
        Resolver::new(&parse(writer), &parse(reader)).unwrap_err().to_string()
    }

    fn record(name: &str, fields: &str) -> String {
        format!(r#"{{"type": "record", "name": "{name}", "fields": [{fields}]}}"#)
    }

    #[test]
    fn identical_schemas_copy_the_bytes() {
        let schema = crate::datum::tests::MOVIE;
        let resolver = check(schema, schema);
        assert!(resolver.is_identity());
        let s = parse(schema);
        let bytes = encode_datum(&s, &crate::datum::tests::movie(3)).unwrap();
        assert_eq!(resolver.convert(&bytes).unwrap(), bytes);
        // Formatting and key order do not matter.
        let reordered = serde_json::to_string_pretty(&s.to_json_value()).unwrap();
        assert!(Resolver::new(&s, &parse(&reordered)).unwrap().is_identity());
        // Every case of the datum tests resolves to itself. (Not against apache-avro: its
        // resolution of decimals checks a precision its own encoder does not.)
        for (text, values) in crate::datum::tests::cases() {
            let schema = parse(text);
            let resolver = Resolver::new(&schema, &schema).unwrap();
            for value in values {
                let bytes = encode_datum(&schema, &value).unwrap();
                assert_eq!(resolver.convert(&bytes).unwrap(), bytes);
            }
        }
        // Schemas that differ only in docs (the same canonical form) copy the datum too.
        let documented = schema.replacen(r#""name": "movie","#, r#""name": "movie", "doc": "films","#, 1);
        let resolver = check(schema, &documented);
        assert!(resolver.is_identity());
        assert!(matches!(resolver.root, Action::Copy(_)));
        assert_eq!(resolver.convert(&bytes).unwrap(), bytes);
    }

    #[test]
    fn promotions() {
        let writer = record(
            "R",
            r#"{"name": "a", "type": "int"}, {"name": "b", "type": "int"}, {"name": "c", "type": "int"},
               {"name": "d", "type": "long"}, {"name": "e", "type": "long"}, {"name": "f", "type": "float"},
               {"name": "g", "type": "string"}, {"name": "h", "type": "bytes"}"#,
        );
        let reader = record(
            "R",
            r#"{"name": "a", "type": "long"}, {"name": "b", "type": "float"}, {"name": "c", "type": "double"},
               {"name": "d", "type": "float"}, {"name": "e", "type": "double"}, {"name": "f", "type": "double"},
               {"name": "g", "type": "bytes"}, {"name": "h", "type": "string"}"#,
        );
        let resolver = check(&writer, &reader);
        assert!(!resolver.is_identity());
        // Top-level primitives too.
        for (w, r) in [
            ("int", "long"),
            ("int", "float"),
            ("int", "double"),
            ("long", "float"),
            ("long", "double"),
            ("float", "double"),
            ("string", "bytes"),
            ("bytes", "string"),
        ] {
            check(&format!("\"{w}\""), &format!("\"{r}\""));
        }
        // Bytes read as a string must be UTF-8.
        let resolver = Resolver::new(&parse("\"bytes\""), &parse("\"string\"")).unwrap();
        let e = resolver.convert(&[4, 0xff, 0xfe]).unwrap_err();
        assert_eq!(e.to_string(), "string is not valid UTF-8 at byte 0");
    }

    #[test]
    fn added_fields_take_their_defaults() {
        let writer = record("R", r#"{"name": "id", "type": "long"}"#);
        let reader = record(
            "R",
            r#"{"name": "n", "type": "null", "default": null},
               {"name": "b", "type": "boolean", "default": true},
               {"name": "i", "type": "int", "default": -3},
               {"name": "id", "type": "long"},
               {"name": "l", "type": "long", "default": 1099511627776},
               {"name": "f", "type": "float", "default": 1.5},
               {"name": "d", "type": "double", "default": 2},
               {"name": "s", "type": "string", "default": "héllo"},
               {"name": "by", "type": "bytes", "default": "abc"},
               {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}, "default": "Y"},
               {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 2}, "default": "ab"},
               {"name": "a", "type": {"type": "array", "items": "int"}, "default": [1, 2, 3]},
               {"name": "m", "type": {"type": "map", "values": "long"}, "default": {"k": 7}},
               {"name": "r", "type": {"type": "record", "name": "S", "fields": [
                   {"name": "x", "type": "int"}, {"name": "y", "type": "string", "default": "why"}]},
                "default": {"x": 4}},
               {"name": "u1", "type": ["null", "int"], "default": null},
               {"name": "u2", "type": ["int", "null"], "default": 5},
               {"name": "u3", "type": ["string", "null"], "default": "first"},
               {"name": "u4", "type": ["S", "null"], "default": {"x": 9, "y": "z"}}"#,
        );
        check(&writer, &reader);
        let resolver = check_values(&writer, &reader, &[Value::Record(vec![("id".into(), Value::Long(42))])], 0);
        let converted = resolver.convert(&[84]).unwrap();
        let Value::Record(fields) = decode_datum(resolver.reader(), &converted).unwrap() else { panic!() };
        let get = |name: &str| fields.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(get("id"), Value::Long(42));
        // A union's default is a value of its first branch.
        assert_eq!(get("u2"), Value::Union(0, Box::new(Value::Int(5))));
        assert_eq!(get("u3"), Value::Union(0, Box::new(Value::String("first".into()))));

        // Bytes defaults are code points 0-255 (apache-avro reads them as UTF-8, so no oracle).
        let reader = record(
            "R",
            r#"{"name": "id", "type": "long"}, {"name": "raw", "type": "bytes", "default": "\u00ff\u0000"}"#,
        );
        let resolver = Resolver::new(&parse(&writer), &parse(&reader)).unwrap();
        assert_eq!(resolver.convert(&[84]).unwrap(), [84, 4, 0xff, 0]);
    }

    #[test]
    fn defaults_must_fit_the_first_branch() {
        let writer = record("R", r#"{"name": "id", "type": "long"}"#);
        let reader = record(
            "R",
            r#"{"name": "id", "type": "long"}, {"name": "note", "type": ["null", "string"], "default": "none"}"#,
        );
        // The schema parser accepts this default (it fits a branch), but resolution needs the
        // first branch.
        assert_eq!(
            error(&writer, &reader),
            "field \"note\": the writer schema has no such field, and the default \"none\" does not fit the first branch (null) of the reader's union: expected null, found \"none\""
        );
        // With the field in the writer, the default is not needed.
        let with_note = record("R", r#"{"name": "id", "type": "long"}, {"name": "note", "type": ["null", "string"]}"#);
        check(&with_note, &reader);
    }

    #[test]
    fn removed_and_reordered_fields() {
        let writer = r#"{"type": "record", "name": "movie", "namespace": "film", "fields": [
            {"name": "title", "type": "string"},
            {"name": "cast", "type": {"type": "array", "items": {"type": "record", "name": "actor",
                "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}]}}},
            {"name": "tags", "type": {"type": "map", "values": ["null", "string", "actor"]}},
            {"name": "year", "type": "int"},
            {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
            {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["DRAMA", "COMEDY"]}},
            {"name": "rating", "type": ["null", "double"]},
            {"name": "director", "type": "actor"},
            {"name": "blob", "type": "bytes"}
        ]}"#;
        // Fewer fields, in another order, with defaults between them: the scratch-buffer path.
        let reader = r#"{"type": "record", "name": "movie", "namespace": "film", "fields": [
            {"name": "rating", "type": ["null", "double"]},
            {"name": "added", "type": "string", "default": "x"},
            {"name": "year", "type": "long"},
            {"name": "director", "type": {"type": "record", "name": "actor",
                "fields": [{"name": "age", "type": "double"}, {"name": "name", "type": "string"}]}},
            {"name": "title", "type": "string"}
        ]}"#;
        let resolver = check(writer, reader);
        assert!(!resolver.records.iter().all(|p| p.in_order));
        // Fewer fields in the same order: the direct path.
        let reader = r#"{"type": "record", "name": "movie", "namespace": "film", "fields": [
            {"name": "added", "type": "string", "default": "x"},
            {"name": "title", "type": "string"},
            {"name": "year", "type": "double"},
            {"name": "between", "type": "int", "default": 1},
            {"name": "rating", "type": ["null", "double"]},
            {"name": "after", "type": "int", "default": 2}
        ]}"#;
        let resolver = check(writer, reader);
        assert!(resolver.records.iter().all(|p| p.in_order));
    }

    #[test]
    fn nested_records_arrays_and_maps_resolve_inside() {
        let writer = r#"{"type": "record", "name": "Outer", "fields": [
            {"name": "people", "type": {"type": "array", "items": {"type": "record", "name": "P", "fields": [
                {"name": "age", "type": "int"}, {"name": "gone", "type": "string"}]}}},
            {"name": "scores", "type": {"type": "map", "values": {"type": "array", "items": "float"}}},
            {"name": "boss", "type": ["null", "P"]},
            {"name": "again", "type": "P"}
        ]}"#;
        let reader = r#"{"type": "record", "name": "ns.Outer", "fields": [
            {"name": "people", "type": {"type": "array", "items": {"type": "record", "name": "P", "fields": [
                {"name": "age", "type": "long"}, {"name": "new", "type": "int", "default": 0}]}}},
            {"name": "scores", "type": {"type": "map", "values": {"type": "array", "items": "double"}}},
            {"name": "boss", "type": ["null", "P"]},
            {"name": "again", "type": "P"}
        ]}"#;
        let resolver = check(writer, reader);
        // P is planned once, used three times.
        assert_eq!(resolver.records.len(), 2);
    }

    #[test]
    fn recursive_types() {
        let writer = r#"{"type": "record", "name": "Node", "fields": [
            {"name": "value", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]}"#;
        let reader = r#"{"type": "record", "name": "Node", "fields": [
            {"name": "value", "type": "long"}, {"name": "label", "type": "string", "default": ""},
            {"name": "next", "type": ["null", "Node"]}]}"#;
        let resolver = check(writer, reader);
        let w = parse(writer);
        let list = |n: usize| {
            let mut bytes = Vec::new();
            for _ in 0..n - 1 {
                bytes.extend([2, 2]); // value 1, branch 1
            }
            bytes.extend([2, 0]);
            bytes
        };
        // Identical recursive parts are copied, and a copied part is skipped with the
        // datum reader's own depth cap.
        assert!(Resolver::new(&w, &w).unwrap().is_identity());
        // As small a stack as a wasm guest's (1 MiB) when optimized, as in the datum tests.
        let stack = if cfg!(debug_assertions) { 4 << 20 } else { 1 << 20 };
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || {
                let converted = resolver.convert(&list(MAX_DEPTH)).unwrap();
                crate::validate(resolver.reader(), &converted).unwrap();
                let e = resolver.convert(&list(MAX_DEPTH + 1)).unwrap_err();
                assert_eq!(e.kind(), &DatumErrorKind::TooDeep);
                assert!(resolver.convert(&list(100_000)).is_err());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn enums_map_symbols_by_name() {
        let writer = r#"{"type": "enum", "name": "a.Suit", "symbols": ["SPADES", "HEARTS", "CLUBS"]}"#;
        let reader = r#"{"type": "enum", "name": "b.Suit", "symbols": ["CLUBS", "DIAMONDS", "SPADES", "HEARTS"]}"#;
        check(writer, reader);
        // A symbol the reader lacks becomes its default ...
        let reader =
            r#"{"type": "enum", "name": "Suit", "symbols": ["UNKNOWN", "HEARTS", "SPADES"], "default": "UNKNOWN"}"#;
        check(writer, reader);
        let resolver = Resolver::new(&parse(writer), &parse(reader)).unwrap();
        assert_eq!(resolver.convert(&[4]).unwrap(), [0]);
        // ... and without one, the pair is refused, naming the enums and the symbols.
        let reader = r#"{"type": "enum", "name": "Suit", "symbols": ["HEARTS", "SPADES"]}"#;
        assert_eq!(
            error(writer, reader),
            "writer enum \"a.Suit\" has symbols that reader enum \"Suit\" lacks (CLUBS), and the reader's enum has no default"
        );
        assert_eq!(
            error(
                r#"{"type": "enum", "name": "E", "symbols": ["A", "B", "C", "D"]}"#,
                r#"{"type": "enum", "name": "E", "symbols": ["C", "A"]}"#
            ),
            "writer enum \"E\" has symbols that reader enum \"E\" lacks (B, D), and the reader's enum has no default"
        );
        // In a record, the error names the field.
        let w = record("R", &format!(r#"{{"name": "suit", "type": {writer}}}"#));
        let r = record("R", &format!(r#"{{"name": "suit", "type": {reader}}}"#));
        let e = Resolver::new(&parse(&w), &parse(&r)).unwrap_err();
        assert_eq!(e.path(), "suit");
        assert!(e.message().contains("(CLUBS)"), "{e}");
        // Partial resolution follows the spec per datum: only a datum with that symbol fails.
        let resolver = Resolver::new_partial(&parse(writer), &parse(reader)).unwrap();
        assert_eq!(resolver.convert(&[0]).unwrap(), [2]);
        assert_eq!(resolver.convert(&[2]).unwrap(), [0]);
        let e = resolver.convert(&[4]).unwrap_err();
        assert_eq!(e.to_string(), "symbol \"CLUBS\" is not in reader enum \"Suit\", which has no default at byte 0");
        assert!(oracle(writer, reader, &parse(reader), &[4]).is_err());
        let resolver = Resolver::new_partial(&parse(&w), &parse(&r)).unwrap();
        assert!(resolver.convert(&[4]).unwrap_err().to_string().starts_with("field \"suit\": symbol \"CLUBS\""));
        // A reader with every writer symbol needs no default.
        check(r#"{"type": "enum", "name": "Suit", "symbols": ["HEARTS"]}"#, reader);
        assert_eq!(
            error(writer, r#"{"type": "enum", "name": "Colour", "symbols": ["HEARTS"]}"#),
            "writer enum \"a.Suit\" cannot be read as enum \"Colour\": the names differ"
        );
    }

    #[test]
    fn a_field_default_is_no_enum_default() {
        let writer = record("R", r#"{"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}}"#);
        // The reader field's default is for a writer without the field, not for unknown symbols.
        let reader = record(
            "R",
            r#"{"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}, "default": "A"}"#,
        );
        assert_eq!(
            error(&writer, &reader),
            "field \"e\": writer enum \"E\" has symbols that reader enum \"E\" lacks (C), and the reader's enum has no default"
        );
        let partial = Resolver::new_partial(&parse(&writer), &parse(&reader)).unwrap();
        assert!(partial.convert(&[4]).unwrap_err().to_string().contains("symbol \"C\" is not in reader enum"));
        assert_eq!(partial.convert(&[2]).unwrap(), [2]);
        // With both, an unknown symbol takes the enum's default (B), not the field's (A).
        let reader = record(
            "R",
            r#"{"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"], "default": "B"}, "default": "A"}"#,
        );
        let resolver = check(&writer, &reader);
        assert_eq!(resolver.convert(&[4]).unwrap(), [2]);
        assert_eq!(resolver.convert(&[0]).unwrap(), [0]);
        // The enum default does not stand in for a field the writer lacks.
        let missing = record(
            "R",
            r#"{"name": "f", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"], "default": "B"}}"#,
        );
        assert_eq!(
            error(&writer, &missing),
            "field \"f\": the writer schema has no such field, and the reader schema gives it no default"
        );
    }

    #[test]
    fn enums_in_unions() {
        let writer = r#"{"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}"#;
        // A writer enum goes to the reader union's branch of its name; the symbols are checked
        // there.
        let lacking = r#"["null", {"type": "enum", "name": "E", "symbols": ["A", "B"]}]"#;
        assert_eq!(
            error(writer, lacking),
            "writer enum \"E\" has symbols that reader enum \"E\" lacks (C), and the reader's enum has no default"
        );
        let defaulted = r#"["null", {"type": "enum", "name": "E", "symbols": ["A", "B"], "default": "A"}]"#;
        let resolver = check(writer, defaulted);
        assert_eq!(resolver.convert(&[4]).unwrap(), [2, 0]);
        assert_eq!(resolver.convert(&[2]).unwrap(), [2, 2]);
        // An enum of another name is no match, whatever its symbols.
        assert_eq!(
            error(writer, r#"["null", {"type": "enum", "name": "F", "symbols": ["A", "B", "C"]}]"#),
            "writer type enum \"E\" matches no branch of reader union [null, enum \"F\"]"
        );
        // A writer union's enum branch is checked like any other branch ...
        let writer_union = r#"["null", {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}]"#;
        assert!(error(writer_union, lacking).contains("lacks (C)"));
        check(writer_union, defaulted);
        // ... and, resolved partially, fails only the datums with the unknown symbol.
        let partial = Resolver::new_partial(&parse(writer_union), &parse(lacking)).unwrap();
        assert_eq!(partial.convert(&[2, 2]).unwrap(), [2, 2]);
        assert!(partial.convert(&[2, 4]).is_err());
        assert_eq!(partial.convert(&[0]).unwrap(), [0]);
    }

    #[test]
    fn fixed_match_by_name_and_size() {
        check(r#"{"type": "fixed", "name": "a.Md5", "size": 16}"#, r#"{"type": "fixed", "name": "Md5", "size": 16}"#);
        assert_eq!(
            error(r#"{"type": "fixed", "name": "Md5", "size": 16}"#, r#"{"type": "fixed", "name": "Md5", "size": 4}"#),
            "writer fixed \"Md5\" has 16 bytes, reader fixed \"Md5\" has 4"
        );
        assert_eq!(
            error(r#"{"type": "fixed", "name": "Md5", "size": 16}"#, r#"{"type": "fixed", "name": "Sha", "size": 16}"#),
            "writer fixed \"Md5\" cannot be read as fixed \"Sha\": the names differ"
        );
    }

    /// Converts `value` (a datum of `writer`) to `reader` and decodes it.
    fn convert_value(writer: &str, reader: &str, value: &Value) -> Value {
        let (w, r) = (parse(writer), parse(reader));
        let resolver = Resolver::new(&w, &r).unwrap_or_else(|e| panic!("{e}"));
        let bytes = resolver.convert(&encode_datum(&w, value).unwrap()).unwrap();
        decode_datum(&r, &bytes).unwrap()
    }

    #[test]
    fn field_aliases() {
        let writer = record("R", r#"{"name": "id", "type": "int"}, {"name": "time", "type": "long"}"#);
        let reader =
            record("R", r#"{"name": "date", "aliases": ["time"], "type": "long"}, {"name": "id", "type": "long"}"#);
        let value = Value::Record(vec![("id".into(), Value::Int(7)), ("time".into(), Value::Long(1_700_000_000_000))]);
        assert_eq!(
            convert_value(&writer, &reader, &value),
            Value::Record(vec![("date".into(), Value::Long(1_700_000_000_000)), ("id".into(), Value::Long(7)),])
        );
        // An alias does not take a writer field that a reader field has by name.
        let reader = record(
            "R",
            r#"{"name": "time", "type": "long", "default": 0}, {"name": "date", "aliases": ["time"], "type": "long", "default": -1}"#,
        );
        assert_eq!(
            convert_value(&writer, &reader, &value),
            Value::Record(vec![("time".into(), Value::Long(1_700_000_000_000)), ("date".into(), Value::Long(-1)),])
        );
        // The first alias the writer has; promotions apply through an alias.
        let reader = record("R", r#"{"name": "key", "aliases": ["nope", "id"], "type": "double"}"#);
        assert_eq!(convert_value(&writer, &reader, &value), Value::Record(vec![("key".into(), Value::Double(7.0))]));
        // Without the alias, the field is missing.
        let reader = record("R", r#"{"name": "date", "type": "long"}"#);
        assert_eq!(
            error(&writer, &reader),
            "field \"date\": the writer schema has no such field, and the reader schema gives it no default"
        );
    }

    #[test]
    fn named_type_aliases() {
        // A record read as a record with another name that has the writer's full name as an
        // alias (a short alias is in the reader's namespace).
        let writer = r#"{"type": "record", "name": "old.Film", "fields": [{"name": "t", "type": "string"}]}"#;
        let reader = r#"{"type": "record", "name": "Movie", "namespace": "new", "aliases": ["old.Film"], "fields": [{"name": "t", "type": "string"}]}"#;
        let value = Value::Record(vec![("t".into(), Value::String("Heat".into()))]);
        let resolver = Resolver::new(&parse(writer), &parse(reader)).unwrap();
        assert!(!resolver.is_identity());
        assert_eq!(convert_value(writer, reader, &value), value);
        let relative = r#"{"type": "record", "name": "Movie", "namespace": "old", "aliases": ["Film"], "fields": [{"name": "t", "type": "string"}]}"#;
        assert_eq!(convert_value(writer, relative, &value), value);
        // The alias is a full name: another namespace's Film does not match it.
        let other = r#"{"type": "record", "name": "Movie", "namespace": "new", "aliases": ["Film"], "fields": [{"name": "t", "type": "string"}]}"#;
        assert_eq!(
            error(writer, other),
            "writer record \"old.Film\" cannot be read as record \"new.Movie\": the names differ"
        );
        // Writer aliases play no part.
        let writer_alias = r#"{"type": "record", "name": "Film", "aliases": ["Movie"], "fields": []}"#;
        assert!(error(writer_alias, &record("Movie", "")).contains("the names differ"));

        // Enums and fixed types likewise, also inside records and unions.
        let writer = r#"{"type": "record", "name": "R", "fields": [
            {"name": "suit", "type": {"type": "enum", "name": "Suit", "symbols": ["HEARTS", "SPADES"]}},
            {"name": "hash", "type": {"type": "fixed", "name": "Md5", "size": 2}},
            {"name": "either", "type": ["null", {"type": "fixed", "name": "Sha", "size": 1}]}
        ]}"#;
        let reader = r#"{"type": "record", "name": "R", "fields": [
            {"name": "suit", "type": {"type": "enum", "name": "Colour", "aliases": ["Suit"], "symbols": ["SPADES", "HEARTS"]}},
            {"name": "hash", "type": {"type": "fixed", "name": "Digest", "aliases": ["Md5"], "size": 2}},
            {"name": "either", "type": ["null", "Digest", {"type": "fixed", "name": "Sha1", "aliases": ["Sha"], "size": 1}]}
        ]}"#;
        let value = Value::Record(vec![
            ("suit".into(), Value::Enum(0, "HEARTS".into())),
            ("hash".into(), Value::Fixed(vec![1, 2])),
            ("either".into(), Value::Union(1, Box::new(Value::Fixed(vec![9])))),
        ]);
        assert_eq!(
            convert_value(writer, reader, &value),
            Value::Record(vec![
                ("suit".into(), Value::Enum(1, "HEARTS".into())),
                ("hash".into(), Value::Fixed(vec![1, 2])),
                ("either".into(), Value::Union(2, Box::new(Value::Fixed(vec![9])))),
            ])
        );
        assert_eq!(
            error(
                r#"{"type": "fixed", "name": "Md5", "size": 16}"#,
                r#"{"type": "fixed", "name": "Digest", "aliases": ["Md5"], "size": 4}"#
            ),
            "writer fixed \"Md5\" has 16 bytes, reader fixed \"Digest\" has 4"
        );
        assert!(error(
            r#"{"type": "enum", "name": "Suit", "symbols": ["A"]}"#,
            r#"{"type": "enum", "name": "Colour", "aliases": ["Shade"], "symbols": ["A"]}"#
        )
        .contains("the names differ"));
    }

    #[test]
    fn docs_aliases_and_attributes_keep_the_identity() {
        let writer = record("R", r#"{"name": "a", "type": "int"}"#);
        let reader = r#"{"type": "record", "name": "R", "doc": "d", "aliases": ["S"], "x": 1,
            "fields": [{"name": "a", "type": {"type": "int"}, "doc": "e", "aliases": ["b"], "default": 0}]}"#;
        assert!(Resolver::new(&parse(&writer), &parse(reader)).unwrap().is_identity());
    }

    #[test]
    fn unions_on_either_side() {
        // Union to union: each writer branch finds its reader branch.
        check(r#"["null", "int", "string"]"#, r#"["string", "null", "long"]"#);
        check(r#"["null", "int"]"#, r#"["null", "double", "long"]"#);
        // Writer plain, reader union: the same type first, then the first promotion.
        check("\"int\"", r#"["null", "double", "int"]"#);
        check("\"int\"", r#"["null", "float", "long"]"#);
        check("\"string\"", r#"["bytes", "string"]"#);
        check("\"bytes\"", r#"["null", "string"]"#);
        let resolver = Resolver::new(&parse("\"int\""), &parse(r#"["null", "double", "int"]"#)).unwrap();
        assert_eq!(resolver.convert(&[2]).unwrap(), [4, 2]);
        // A record goes to the branch of its name (apache-avro takes the first record branch,
        // whatever its name, so this is checked by hand).
        let resolver = Resolver::new(
            &parse(&record("R", r#"{"name": "a", "type": "int"}"#)),
            &parse(&format!(
                r#"["null", {}, {}]"#,
                record("Q", r#"{"name": "a", "type": "int"}"#),
                record("R", r#"{"name": "a", "type": "long"}, {"name": "b", "type": "int", "default": 1}"#)
            )),
        )
        .unwrap();
        assert_eq!(resolver.convert(&[6]).unwrap(), [4, 6, 2]);
        // Writer union, reader plain: every branch must be readable ...
        check(r#"["int", "long"]"#, "\"double\"");
        check(r#"["null", "int"]"#, r#"["int", "null"]"#);
        assert_eq!(error(r#"["null", "string"]"#, "\"string\""), "writer type null cannot be read as string");
        // ... unless resolution is partial: then a datum using that branch fails.
        let partial = Resolver::new_partial(&parse(r#"["null", "string"]"#), &parse("\"string\"")).unwrap();
        assert_eq!(partial.convert(&[2, 2, b'x']).unwrap(), [2, b'x']);
        assert_eq!(
            partial.convert(&[0]).unwrap_err().to_string(),
            "writer union branch 0 (null) cannot be read: writer type null cannot be read as string at byte 0"
        );
        assert!(Resolver::new_partial(&parse(r#"["null", "boolean"]"#), &parse("\"string\"")).is_err());
        assert_eq!(
            error("\"boolean\"", r#"["null", "string", "double"]"#),
            "writer type boolean matches no branch of reader union [null, string, double]"
        );
    }

    #[test]
    fn incompatibilities_name_the_field() {
        let writer = crate::datum::tests::MOVIE;
        let change = |from: &str, to: &str| {
            assert!(writer.contains(from), "{from}");
            writer.replacen(from, to, 1)
        };
        assert_eq!(
            error(writer, &change(r#"["null", "double"]"#, r#""double""#)),
            "field \"rating\": writer type null cannot be read as double"
        );
        assert_eq!(
            error(&change(r#"["null", "double"]"#, r#""string""#), &change(r#"["null", "double"]"#, r#""double""#)),
            "field \"rating\": writer type string cannot be read as double"
        );
        assert_eq!(
            error(writer, &change(r#"{"name": "age", "type": "int"}"#, r#"{"name": "age", "type": "string"}"#)),
            "field \"cast[].age\": writer type int cannot be read as string"
        );
        assert_eq!(
            error(writer, &change(r#"{"type": "map", "values": "string"}"#, r#"{"type": "map", "values": "long"}"#)),
            "field \"tags{}\": writer type string cannot be read as long"
        );
        assert_eq!(
            error(
                writer,
                &change(
                    r#"{"name": "flag", "type": "boolean"}"#,
                    r#"{"name": "flag", "type": "boolean"}, {"name": "country", "type": "string"}"#
                )
            ),
            "field \"country\": the writer schema has no such field, and the reader schema gives it no default"
        );
        assert_eq!(
            error(writer, &writer.replace(r#""actor""#, r#""player""#)),
            "field \"cast[]\": writer record \"film.actor\" cannot be read as record \"film.player\": the names differ"
        );
        assert_eq!(
            error(writer, &change(r#""name": "movie""#, r#""name": "film""#)),
            "writer record \"film.movie\" cannot be read as record \"film.film\": the names differ"
        );
        assert_eq!(error("\"long\"", "\"int\""), "writer type long cannot be read as int");
        assert_eq!(error("\"double\"", "\"float\""), "writer type double cannot be read as float");
        let e = Resolver::new(
            &parse(writer),
            &parse(&change(r#"{"name": "age", "type": "int"}"#, r#"{"name": "age", "type": "string"}"#)),
        )
        .unwrap_err();
        assert_eq!(e.path(), "cast[].age");
        assert_eq!(e.message(), "writer type int cannot be read as string");
    }

    #[test]
    fn logical_types_resolve_as_their_base() {
        check(
            r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
            r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
        );
        let resolver = Resolver::new(&parse(r#"{"type": "int", "logicalType": "date"}"#), &parse("\"long\"")).unwrap();
        assert_eq!(resolver.convert(&[3]).unwrap(), [3]);
    }

    #[test]
    fn bad_datums_fail_without_panics() {
        let writer = crate::datum::tests::MOVIE;
        let reader =
            writer.replacen(r#"{"name": "year", "type": "int"}"#, r#"{"name": "year", "type": "double"}"#, 1).replacen(
                r#"{"name": "age", "type": "int"}"#,
                r#"{"name": "age", "type": "long"}, {"name": "x", "type": "int", "default": 1}"#,
                1,
            );
        let (w, r) = (parse(writer), parse(&reader));
        let resolver = Resolver::new(&w, &r).unwrap();
        let bytes = encode_datum(&w, &crate::datum::tests::movie(3)).unwrap();
        check_values(writer, &reader, &[crate::datum::tests::movie(0), crate::datum::tests::movie(3)], 50);
        for cut in 0..bytes.len() {
            let mut out = vec![7];
            assert!(resolver.convert_into(&bytes[..cut], &mut out).is_err(), "cut at {cut}");
            assert_eq!(out, [7], "output left as it was");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            resolver.convert(&long).unwrap_err().to_string(),
            format!("1 bytes left over after the datum at byte {}", bytes.len())
        );
        let mut rng = Rng(42);
        for _ in 0..2000 {
            let mut bad = bytes.clone();
            for _ in 0..3 {
                let i = rng.below(bad.len());
                bad[i] = rng.next() as u8;
            }
            if let Ok(out) = resolver.convert(&bad) {
                // Structure is checked as it is converted; content as the datum reader would.
                let _ = decode_datum(&r, &out);
            }
        }
        // Hostile counts.
        let ints = parse(r#"{"type": "array", "items": "int"}"#);
        let longs = parse(r#"{"type": "array", "items": "long"}"#);
        let resolver = Resolver::new(&ints, &parse(r#"{"type": "array", "items": "double"}"#)).unwrap();
        let mut huge = Vec::new();
        write_long(&mut huge, 1 << 60);
        huge.extend([2; 10]);
        assert!(matches!(resolver.convert(&huge).unwrap_err().kind(), DatumErrorKind::CountTooLarge { .. }));
        let nulls = Resolver::new(
            &parse(r#"{"type": "array", "items": "null"}"#),
            &parse(r#"{"type": "array", "items": ["null", "int"]}"#),
        )
        .unwrap();
        let mut bytes = Vec::new();
        write_long(&mut bytes, 1 << 40);
        bytes.push(0);
        assert!(nulls.convert(&bytes).is_err());
        assert_eq!(nulls.convert(&[6, 0]).unwrap(), [6, 0, 0, 0, 0]);
        // Blocks with byte sizes are read; the output has plain counts.
        let mut blocks = Vec::new();
        write_long(&mut blocks, -2);
        write_long(&mut blocks, 2);
        blocks.extend([2, 4]);
        write_long(&mut blocks, 1);
        blocks.extend([6, 0]);
        let promoted = resolver.convert(&blocks).unwrap();
        assert_eq!(
            decode_datum(resolver.reader(), &promoted).unwrap(),
            Value::Array(vec![Value::Double(1.0), Value::Double(2.0), Value::Double(3.0)])
        );
        blocks[1] = 6; // a size of 3 for 2 bytes of items
        assert!(matches!(resolver.convert(&blocks).unwrap_err().kind(), DatumErrorKind::BlockSizeMismatch { .. }));
        let _ = longs;
    }
}
