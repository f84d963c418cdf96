//! Reading, skipping, validating and writing Avro binary datums.
//!
//! Everything here treats the bytes as hostile: every read is bounds-checked, lengths and item
//! counts are checked against the bytes that remain before anything is allocated, and nesting
//! through recursive types is capped, so bad input gives a [`DatumError`], never a panic.

use std::fmt;
use std::ops::Range;

use super::schema::{AvroType, RecordType, Schema};
use super::Value;

/// Deepest nesting of records in one datum. Only recursive types can nest without bound, and
/// they must go through records, so counting records bounds the recursion (and the stack, which
/// is small in a wasm guest).
pub const MAX_DEPTH: usize = 200;

/// How many array or map items one datum may hold beyond one per byte of input. Only items that
/// encode to zero bytes (null, empty records) can use it: enough for real data, too few to let
/// a tiny datum decode into gigabytes.
const ZERO_SIZE_ALLOWANCE: usize = 1 << 16;

/// What is wrong with a datum (or with a value given to [`encode`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DatumErrorKind {
    #[error("unexpected end of datum")]
    UnexpectedEnd,
    #[error("variable-length integer is too long")]
    VarintOverflow,
    #[error("negative length {0}")]
    NegativeLength(i64),
    #[error("length {len} is larger than the {remaining} bytes remaining")]
    LengthTooLarge { len: u64, remaining: usize },
    #[error("block of {count} items is larger than the {remaining} bytes remaining")]
    CountTooLarge { count: u64, remaining: usize },
    #[error("block says it has {declared} bytes but its items have {actual}")]
    BlockSizeMismatch { declared: usize, actual: usize },
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("boolean byte is {0:#04x}, not 0 or 1")]
    InvalidBoolean(u8),
    #[error("union branch {index} out of range ({branches} branches)")]
    UnionIndex { index: i64, branches: usize },
    #[error("enum index {index} out of range ({symbols} symbols)")]
    EnumIndex { index: i64, symbols: usize },
    #[error("{0} bytes left over after the datum")]
    TrailingBytes(usize),
    #[error("unknown named type \"{0}\"")]
    UnknownType(String),
    #[error("records nested more than {MAX_DEPTH} deep")]
    TooDeep,
    #[error("expected {expected}, found {found}")]
    Mismatch { expected: String, found: String },
    /// A value that has the right kind but does not fit its type (wrong fixed size ...).
    #[error("{0}")]
    Invalid(String),
}

/// A datum that does not match its schema: what, where in the bytes, and in which field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}{}", path_prefix(&.0.path), .0.kind, offset_suffix(&.0.offset))]
// Boxed so that the Ok path of every read passes a pointer-sized Result, not a large error.
pub struct DatumError(Box<ErrorInner>);

#[derive(Debug, Clone, PartialEq)]
struct ErrorInner {
    kind: DatumErrorKind,
    offset: Option<usize>,
    path: Path,
}

pub(crate) fn path_prefix(path: &Path) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("field \"{path}\": ")
    }
}

fn offset_suffix(offset: &Option<usize>) -> String {
    offset.map_or_else(String::new, |o| format!(" at byte {o}"))
}

impl DatumError {
    /// An error at byte `offset` of the datum, or with no offset (for [`encode`]).
    pub fn new(kind: DatumErrorKind, offset: Option<usize>) -> DatumError {
        DatumError(Box::new(ErrorInner { kind, offset, path: Path::default() }))
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn at(kind: DatumErrorKind, offset: usize) -> DatumError {
        DatumError::new(kind, Some(offset))
    }

    /// What is wrong.
    pub fn kind(&self) -> &DatumErrorKind {
        &self.0.kind
    }

    /// Where in the datum it went wrong, when reading.
    pub fn offset(&self) -> Option<usize> {
        self.0.offset
    }

    /// The field path (`cast[2].name`), empty at the top level.
    pub fn path(&self) -> String {
        self.0.path.to_string()
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn with_offset(mut self, offset: usize) -> DatumError {
        self.0.offset = Some(offset);
        self
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn in_field(mut self, name: &str) -> DatumError {
        self.0.path.push_outer(Segment::Field(name.to_string()));
        self
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn at_index(mut self, index: usize) -> DatumError {
        self.0.path.push_outer(Segment::Index(index));
        self
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn at_key(mut self, key: &str) -> DatumError {
        self.0.path.push_outer(Segment::Key(key.to_string()));
        self
    }
}

/// A field path, built innermost first as an error travels up, so that the happy path never
/// pays for it.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Path(Vec<Segment>);

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Field(String),
    Index(usize),
    Key(String),
}

impl Path {
    pub(crate) fn push_outer(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().rev().enumerate() {
            match segment {
                Segment::Field(name) if i == 0 => write!(f, "{name}")?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => write!(f, "[{key:?}]")?,
            }
        }
        Ok(())
    }
}

/// A cursor over the bytes of a datum. Every read is bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// How many more array/map items this datum may hold (see [`ZERO_SIZE_ALLOWANCE`]).
    item_budget: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0, item_budget: buf.len().saturating_add(ZERO_SIZE_ALLOWANCE) }
    }

    /// The offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte has been read.
    pub fn is_at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Skips `n` bytes.
    pub fn advance(&mut self, n: usize) -> Result<(), DatumError> {
        if n > self.remaining() {
            return Err(DatumError::at(DatumErrorKind::UnexpectedEnd, self.pos));
        }
        self.pos += n;
        Ok(())
    }

    /// Reads `n` bytes.
    pub fn read_fixed(&mut self, n: usize) -> Result<&'a [u8], DatumError> {
        let start = self.pos;
        self.advance(n)?;
        Ok(&self.buf[start..self.pos])
    }

    /// Reads a zig-zag varint `long` (at most 10 bytes).
    #[inline]
    pub fn read_long(&mut self) -> Result<i64, DatumError> {
        let start = self.pos;
        // Most values are small: one byte.
        if let Some(&b) = self.buf.get(start) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(((b >> 1) as i64) ^ -((b & 1) as i64));
            }
        }
        let mut acc: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(DatumError::at(DatumErrorKind::UnexpectedEnd, start));
            };
            self.pos += 1;
            // The tenth byte holds only bit 63.
            if i == 9 && b > 1 {
                return Err(DatumError::at(DatumErrorKind::VarintOverflow, start));
            }
            acc |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((acc >> 1) as i64) ^ -((acc & 1) as i64));
            }
        }
        Err(DatumError::at(DatumErrorKind::VarintOverflow, start))
    }

    /// Reads a zig-zag varint `int` (at most 5 bytes).
    #[inline]
    pub fn read_int(&mut self) -> Result<i32, DatumError> {
        let start = self.pos;
        let mut acc: u32 = 0;
        for i in 0..5 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(DatumError::at(DatumErrorKind::UnexpectedEnd, start));
            };
            self.pos += 1;
            // The fifth byte holds only bits 28-31.
            if i == 4 && b > 0x0f {
                return Err(DatumError::at(DatumErrorKind::VarintOverflow, start));
            }
            acc |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((acc >> 1) as i32) ^ -((acc & 1) as i32));
            }
        }
        Err(DatumError::at(DatumErrorKind::VarintOverflow, start))
    }

    /// Reads a boolean: one byte, 0 or 1.
    pub fn read_boolean(&mut self) -> Result<bool, DatumError> {
        match self.buf.get(self.pos) {
            Some(&b) if b <= 1 => {
                self.pos += 1;
                Ok(b == 1)
            }
            Some(&b) => Err(DatumError::at(DatumErrorKind::InvalidBoolean(b), self.pos)),
            None => Err(DatumError::at(DatumErrorKind::UnexpectedEnd, self.pos)),
        }
    }

    /// Reads a little-endian `float`.
    pub fn read_float(&mut self) -> Result<f32, DatumError> {
        let b = self.read_fixed(4)?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a little-endian `double`.
    pub fn read_double(&mut self) -> Result<f64, DatumError> {
        let b = self.read_fixed(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    /// Reads a length: a `long` that must be non-negative and fit in what remains.
    pub fn read_len(&mut self) -> Result<usize, DatumError> {
        let start = self.pos;
        let len = self.read_long()?;
        if len < 0 {
            return Err(DatumError::at(DatumErrorKind::NegativeLength(len), start));
        }
        if len as u64 > self.remaining() as u64 {
            return Err(DatumError::at(
                DatumErrorKind::LengthTooLarge { len: len as u64, remaining: self.remaining() },
                start,
            ));
        }
        Ok(len as usize)
    }

    /// Reads `bytes`: a length, then that many bytes.
    pub fn read_bytes(&mut self) -> Result<&'a [u8], DatumError> {
        let len = self.read_len()?;
        self.read_fixed(len)
    }

    /// Reads a `string`, which must be UTF-8.
    pub fn read_str(&mut self) -> Result<&'a str, DatumError> {
        let start = self.pos;
        let bytes = self.read_bytes()?;
        std::str::from_utf8(bytes).map_err(|_| DatumError::at(DatumErrorKind::InvalidUtf8, start))
    }

    /// Reads a union branch index and checks it against the number of branches.
    pub fn read_union_index(&mut self, branches: usize) -> Result<usize, DatumError> {
        let start = self.pos;
        let index = self.read_long()?;
        if index < 0 || index as u64 >= branches as u64 {
            return Err(DatumError::at(DatumErrorKind::UnionIndex { index, branches }, start));
        }
        Ok(index as usize)
    }

    /// Reads an enum symbol index and checks it against the number of symbols.
    pub fn read_enum_index(&mut self, symbols: usize) -> Result<usize, DatumError> {
        let start = self.pos;
        let index = self.read_int()?;
        if index < 0 || index as u64 >= symbols as u64 {
            return Err(DatumError::at(DatumErrorKind::EnumIndex { index: index.into(), symbols }, start));
        }
        Ok(index as usize)
    }

    /// Reads an array or map block header: the item count (0 ends the array or map) and, when
    /// the writer gave one (negative count), the block's size in bytes.
    ///
    /// A count larger than the bytes left is an error unless items can take no bytes at all
    /// (`can_be_empty`, asked only then, as it costs a walk of the item type). Every count is
    /// also charged to the datum's item budget: items that take bytes can never exhaust it, so
    /// it only limits empty ones, which would otherwise let a few bytes stand for billions.
    pub(crate) fn read_block(
        &mut self,
        can_be_empty: impl FnOnce() -> bool,
    ) -> Result<(usize, Option<usize>), DatumError> {
        let start = self.pos;
        let count = self.read_long()?;
        if count == 0 {
            return Ok((0, None));
        }
        let size = if count < 0 { Some(self.read_len()?) } else { None };
        let count = count.unsigned_abs();
        let remaining = self.remaining();
        let room = size.unwrap_or(remaining);
        if count > self.item_budget as u64 || (count > room as u64 && !can_be_empty()) {
            return Err(DatumError::at(DatumErrorKind::CountTooLarge { count, remaining }, start));
        }
        self.item_budget -= count as usize;
        Ok((count as usize, size))
    }
}

/// Follows refs and logical types down to the type that says how the value is encoded.
#[inline]
pub(crate) fn encoding_type<'s>(schema: &'s Schema, ty: &'s AvroType) -> Result<&'s AvroType, DatumError> {
    let mut ty = ty;
    loop {
        match ty {
            AvroType::Logical { base, .. } => ty = base,
            AvroType::Ref(name) => {
                ty = schema
                    .named_type(name)
                    .ok_or_else(|| DatumError::new(DatumErrorKind::UnknownType(name.clone()), None))?;
            }
            _ => return Ok(ty),
        }
    }
}

/// A lower bound on the bytes a value of `ty` takes, used to bound item counts: exact for
/// fixed-size types, 0 for types that can encode to nothing, else 1 (any varint, length,
/// count or index takes a byte). Cheap, as it runs for every array and map.
pub(crate) fn min_size(schema: &Schema, ty: &AvroType, depth: usize) -> usize {
    let Ok(ty) = encoding_type(schema, ty) else {
        return 0;
    };
    match ty {
        AvroType::Null => 0,
        AvroType::Float => 4,
        AvroType::Double => 8,
        AvroType::Fixed(f) => f.size,
        // A record can be empty only if all its fields can; the first that cannot settles it.
        // The depth cap keeps a pathological schema cheap (0 only loosens the check).
        AvroType::Record(r) if depth < 8 => {
            usize::from(r.fields.iter().any(|f| min_size(schema, &f.ty, depth + 1) > 0))
        }
        AvroType::Record(_) => 0,
        _ => 1,
    }
}

/// The exact size of every value of `ty`, if it has one and skipping needs no checks: lets a
/// block of such items be skipped in one step.
fn constant_size(schema: &Schema, ty: &AvroType) -> Option<usize> {
    match encoding_type(schema, ty).ok()? {
        AvroType::Null => Some(0),
        AvroType::Float => Some(4),
        AvroType::Double => Some(8),
        AvroType::Fixed(f) => Some(f.size),
        _ => None,
    }
}

/// Advances past one value of `ty` without allocating. Checks the structure (lengths, union and
/// enum indices) but not the content: strings are not checked for UTF-8, boolean bytes are not
/// checked, and sized array/map blocks are jumped over. Use [`validate`] for full checking.
pub fn skip(schema: &Schema, ty: &AvroType, r: &mut Reader) -> Result<(), DatumError> {
    walk::<false>(schema, ty, r, 0)
}

/// Checks that `bytes` is exactly one datum of `schema.root`: every length, index and string,
/// and nothing left over.
pub fn validate(schema: &Schema, bytes: &[u8]) -> Result<(), DatumError> {
    let mut r = Reader::new(bytes);
    walk::<true>(schema, &schema.root, &mut r, 0)?;
    expect_end(&r)
}

pub(crate) fn expect_end(r: &Reader) -> Result<(), DatumError> {
    if r.is_at_end() {
        Ok(())
    } else {
        Err(DatumError::at(DatumErrorKind::TrailingBytes(r.remaining()), r.position()))
    }
}

/// The byte range of each field of `record` in `bytes`, in schema order; `bytes` must be
/// exactly one such record. Fields are skipped as in [`skip`], so a projection can copy the
/// ranges it keeps.
pub fn field_ranges(schema: &Schema, record: &RecordType, bytes: &[u8]) -> Result<Vec<Range<usize>>, DatumError> {
    let mut ranges = Vec::with_capacity(record.fields.len());
    field_ranges_into(schema, record, bytes, &mut ranges)?;
    Ok(ranges)
}

/// [`field_ranges`] into a vector the caller reuses across records (it is cleared first),
/// saving an allocation per record.
pub fn field_ranges_into(
    schema: &Schema,
    record: &RecordType,
    bytes: &[u8],
    ranges: &mut Vec<Range<usize>>,
) -> Result<(), DatumError> {
    ranges.clear();
    ranges.reserve(record.fields.len());
    let mut r = Reader::new(bytes);
    for field in &record.fields {
        let start = r.pos;
        walk_inline::<false>(schema, &field.ty, &mut r, 1).map_err(|e| e.in_field(&field.name))?;
        ranges.push(start..r.pos);
    }
    expect_end(&r)
}

/// [`walk`], with the common primitive types handled in line: saves a call per field of a flat
/// record, which is most of the cost of [`field_ranges`].
#[inline(always)]
fn walk_inline<const STRICT: bool>(
    schema: &Schema,
    ty: &AvroType,
    r: &mut Reader,
    depth: usize,
) -> Result<(), DatumError> {
    match ty {
        AvroType::Null => Ok(()),
        AvroType::Int => r.read_int().map(drop),
        AvroType::Long => r.read_long().map(drop),
        AvroType::Double => r.advance(8),
        AvroType::Bytes => {
            let len = r.read_len()?;
            r.advance(len)
        }
        AvroType::String if !STRICT => {
            let len = r.read_len()?;
            r.advance(len)
        }
        _ => walk::<STRICT>(schema, ty, r, depth),
    }
}

/// Reads past one value. `STRICT` checks content too (for [`validate`]); otherwise only
/// structure (for [`skip`]). `depth` counts enclosing records.
fn walk<const STRICT: bool>(schema: &Schema, ty: &AvroType, r: &mut Reader, depth: usize) -> Result<(), DatumError> {
    // Unions, refs and logical types continue the loop rather than recurse: one stack frame
    // per nesting level, which is what bounds the depth we can afford.
    let mut ty = ty;
    loop {
        return match ty {
            AvroType::Null => Ok(()),
            AvroType::Boolean if STRICT => r.read_boolean().map(drop),
            AvroType::Boolean => r.advance(1),
            AvroType::Int => r.read_int().map(drop),
            AvroType::Long => r.read_long().map(drop),
            AvroType::Float => r.advance(4),
            AvroType::Double => r.advance(8),
            AvroType::String if STRICT => r.read_str().map(drop),
            AvroType::Bytes | AvroType::String => {
                let len = r.read_len()?;
                r.advance(len)
            }
            AvroType::Fixed(f) => r.advance(f.size),
            AvroType::Enum(e) => r.read_enum_index(e.symbols.len()).map(drop),
            AvroType::Union(branches) => {
                ty = &branches[r.read_union_index(branches.len())?];
                continue;
            }
            AvroType::Record(rec) => {
                if depth >= MAX_DEPTH {
                    return Err(DatumError::at(DatumErrorKind::TooDeep, r.pos));
                }
                for field in &rec.fields {
                    walk_inline::<STRICT>(schema, &field.ty, r, depth + 1).map_err(|e| e.in_field(&field.name))?;
                }
                Ok(())
            }
            AvroType::Array(items) => {
                // Resolved once here, not once per item.
                let items = encoding_type(schema, items).map_err(|e| e.with_offset(r.pos))?;
                let can_be_empty = || min_size(schema, items, 0) == 0;
                let constant = if STRICT { None } else { constant_size(schema, items) };
                let mut index = 0;
                loop {
                    let (count, size) = r.read_block(can_be_empty)?;
                    if count == 0 {
                        return Ok(());
                    }
                    if let (false, Some(size)) = (STRICT, size) {
                        r.advance(size)?;
                    } else if let Some(n) = constant {
                        r.advance(count.saturating_mul(n))?;
                    } else {
                        let start = r.pos;
                        for _ in 0..count {
                            walk_inline::<STRICT>(schema, items, r, depth).map_err(|e| e.at_index(index))?;
                            index += 1;
                        }
                        check_block_size(size, start, r.pos)?;
                    }
                }
            }
            AvroType::Map(values) => {
                let values = encoding_type(schema, values).map_err(|e| e.with_offset(r.pos))?;
                loop {
                    // Map entries are never empty: the key's length takes a byte.
                    // Map entries are never empty: the key's length takes a byte.
                    let (count, size) = r.read_block(|| false)?;
                    if count == 0 {
                        return Ok(());
                    }
                    if let (false, Some(size)) = (STRICT, size) {
                        r.advance(size)?;
                        continue;
                    }
                    let start = r.pos;
                    for _ in 0..count {
                        if STRICT {
                            let key = r.read_str()?;
                            walk::<STRICT>(schema, values, r, depth).map_err(|e| e.at_key(key))?;
                        } else {
                            let len = r.read_len()?;
                            r.advance(len)?;
                            walk::<STRICT>(schema, values, r, depth)?;
                        }
                    }
                    check_block_size(size, start, r.pos)?;
                }
            }
            AvroType::Ref(_) | AvroType::Logical { .. } => {
                ty = encoding_type(schema, ty).map_err(|e| e.with_offset(r.pos))?;
                continue;
            }
        };
    }
}

pub(crate) fn check_block_size(declared: Option<usize>, start: usize, end: usize) -> Result<(), DatumError> {
    match declared {
        Some(declared) if declared != end - start => {
            Err(DatumError::at(DatumErrorKind::BlockSizeMismatch { declared, actual: end - start }, start))
        }
        _ => Ok(()),
    }
}

/// Decodes one value of `ty`.
pub fn decode(schema: &Schema, ty: &AvroType, r: &mut Reader) -> Result<Value, DatumError> {
    decode_at(schema, ty, r, 0)
}

/// Decodes `bytes`, which must be exactly one datum of `schema.root`.
pub fn decode_datum(schema: &Schema, bytes: &[u8]) -> Result<Value, DatumError> {
    let mut r = Reader::new(bytes);
    let value = decode_at(schema, &schema.root, &mut r, 0)?;
    expect_end(&r)?;
    Ok(value)
}

fn decode_at(schema: &Schema, ty: &AvroType, r: &mut Reader, depth: usize) -> Result<Value, DatumError> {
    // Resolved here rather than by recursing, and records, arrays and maps in functions of
    // their own, to keep the stack used per nesting level small.
    let ty = encoding_type(schema, ty).map_err(|e| e.with_offset(r.pos))?;
    Ok(match ty {
        AvroType::Null => Value::Null,
        AvroType::Boolean => Value::Boolean(r.read_boolean()?),
        AvroType::Int => Value::Int(r.read_int()?),
        AvroType::Long => Value::Long(r.read_long()?),
        AvroType::Float => Value::Float(r.read_float()?),
        AvroType::Double => Value::Double(r.read_double()?),
        AvroType::Bytes => Value::Bytes(r.read_bytes()?.to_vec()),
        AvroType::String => Value::String(r.read_str()?.to_string()),
        AvroType::Fixed(f) => Value::Fixed(r.read_fixed(f.size)?.to_vec()),
        AvroType::Enum(e) => {
            let i = r.read_enum_index(e.symbols.len())?;
            Value::Enum(i as u32, e.symbols[i].clone())
        }
        AvroType::Union(branches) => {
            let i = r.read_union_index(branches.len())?;
            Value::Union(i as u32, Box::new(decode_at(schema, &branches[i], r, depth)?))
        }
        AvroType::Record(rec) => decode_record(schema, rec, r, depth)?,
        AvroType::Array(items) => decode_array(schema, items, r, depth)?,
        AvroType::Map(values) => decode_map(schema, values, r, depth)?,
        AvroType::Ref(_) | AvroType::Logical { .. } => unreachable!("resolved above"),
    })
}

#[inline(never)]
fn decode_record(schema: &Schema, rec: &RecordType, r: &mut Reader, depth: usize) -> Result<Value, DatumError> {
    if depth >= MAX_DEPTH {
        return Err(DatumError::at(DatumErrorKind::TooDeep, r.pos));
    }
    let mut fields = Vec::with_capacity(rec.fields.len());
    for field in &rec.fields {
        let value = decode_at(schema, &field.ty, r, depth + 1).map_err(|e| e.in_field(&field.name))?;
        fields.push((field.name.clone(), value));
    }
    Ok(Value::Record(fields))
}

#[inline(never)]
fn decode_array(schema: &Schema, items_ty: &AvroType, r: &mut Reader, depth: usize) -> Result<Value, DatumError> {
    let items_ty = encoding_type(schema, items_ty).map_err(|e| e.with_offset(r.pos))?;
    let can_be_empty = || min_size(schema, items_ty, 0) == 0;
    let mut items = Vec::new();
    loop {
        let (count, size) = r.read_block(can_be_empty)?;
        if count == 0 {
            return Ok(Value::Array(items));
        }
        // Bounded by the bytes remaining (or the zero-size budget), so not hostile.
        items.reserve(count);
        let start = r.pos;
        for _ in 0..count {
            let index = items.len();
            items.push(decode_at(schema, items_ty, r, depth).map_err(|e| e.at_index(index))?);
        }
        check_block_size(size, start, r.pos)?;
    }
}

#[inline(never)]
fn decode_map(schema: &Schema, values_ty: &AvroType, r: &mut Reader, depth: usize) -> Result<Value, DatumError> {
    let values_ty = encoding_type(schema, values_ty).map_err(|e| e.with_offset(r.pos))?;
    let mut entries = Vec::new();
    loop {
        // Map entries are never empty: the key's length takes a byte.
        let (count, size) = r.read_block(|| false)?;
        if count == 0 {
            return Ok(Value::Map(entries));
        }
        entries.reserve(count);
        let start = r.pos;
        for _ in 0..count {
            let key = r.read_str()?;
            let value = decode_at(schema, values_ty, r, depth).map_err(|e| e.at_key(key))?;
            entries.push((key.to_string(), value));
        }
        check_block_size(size, start, r.pos)?;
    }
}

/// Appends the zig-zag varint encoding of `n`.
#[inline]
pub fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Appends the encoding of `value` as a `ty`, checking that it matches: kinds, union branch and
/// enum index in range, fixed size, record field names and count.
pub fn encode(schema: &Schema, ty: &AvroType, value: &Value, out: &mut Vec<u8>) -> Result<(), DatumError> {
    encode_at(schema, ty, value, out, 0)
}

/// Encodes `value` as one datum of `schema.root`.
pub fn encode_datum(schema: &Schema, value: &Value) -> Result<Vec<u8>, DatumError> {
    let mut out = Vec::new();
    encode(schema, &schema.root, value, &mut out)?;
    Ok(out)
}

#[cold]
fn invalid(message: String) -> DatumError {
    DatumError::new(DatumErrorKind::Invalid(message), None)
}

fn encode_at(schema: &Schema, ty: &AvroType, value: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), DatumError> {
    let ty = encoding_type(schema, ty)?;
    match (ty, value) {
        (AvroType::Null, Value::Null) => {}
        (AvroType::Boolean, Value::Boolean(b)) => out.push(u8::from(*b)),
        (AvroType::Int, Value::Int(n)) => write_long(out, i64::from(*n)),
        (AvroType::Long, Value::Long(n)) => write_long(out, *n),
        (AvroType::Float, Value::Float(x)) => out.extend_from_slice(&x.to_le_bytes()),
        (AvroType::Double, Value::Double(x)) => out.extend_from_slice(&x.to_le_bytes()),
        (AvroType::Bytes, Value::Bytes(b)) => {
            write_long(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        (AvroType::String, Value::String(s)) => {
            write_long(out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        }
        (AvroType::Fixed(f), Value::Fixed(b)) if b.len() == f.size => out.extend_from_slice(b),
        (AvroType::Enum(e), Value::Enum(i, symbol)) if e.symbols.get(*i as usize) == Some(symbol) => {
            write_long(out, i64::from(*i))
        }
        (AvroType::Union(branches), Value::Union(i, inner)) if (*i as usize) < branches.len() => {
            write_long(out, i64::from(*i));
            encode_at(schema, &branches[*i as usize], inner, out, depth)?;
        }
        (AvroType::Record(rec), Value::Record(fields)) => encode_record(schema, rec, fields, out, depth)?,
        (AvroType::Array(items_ty), Value::Array(items)) => {
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                for (i, item) in items.iter().enumerate() {
                    encode_at(schema, items_ty, item, out, depth).map_err(|e| e.at_index(i))?;
                }
            }
            out.push(0);
        }
        (AvroType::Map(values_ty), Value::Map(entries)) => encode_map(schema, values_ty, entries, out, depth)?,
        (ty, value) => return Err(mismatch(ty, value)),
    }
    Ok(())
}

#[inline(never)]
fn encode_record(
    schema: &Schema,
    rec: &RecordType,
    fields: &[(String, Value)],
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), DatumError> {
    if depth >= MAX_DEPTH {
        return Err(DatumError::new(DatumErrorKind::TooDeep, None));
    }
    if fields.len() != rec.fields.len() {
        return Err(invalid(format!(
            "record \"{}\" has {} fields, value has {}",
            rec.name,
            rec.fields.len(),
            fields.len()
        )));
    }
    for (field, (name, v)) in rec.fields.iter().zip(fields) {
        if *name != field.name {
            return Err(invalid(format!(
                "value has field \"{name}\" where record \"{}\" has \"{}\"",
                rec.name, field.name
            )));
        }
        encode_at(schema, &field.ty, v, out, depth + 1).map_err(|e| e.in_field(&field.name))?;
    }
    Ok(())
}

#[inline(never)]
fn encode_map(
    schema: &Schema,
    values_ty: &AvroType,
    entries: &[(String, Value)],
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), DatumError> {
    if !entries.is_empty() {
        write_long(out, entries.len() as i64);
        for (key, v) in entries {
            write_long(out, key.len() as i64);
            out.extend_from_slice(key.as_bytes());
            encode_at(schema, values_ty, v, out, depth).map_err(|e| e.at_key(key))?;
        }
    }
    out.push(0);
    Ok(())
}

/// The error for a value that does not fit its type (kept out of line: it is the rare path).
#[cold]
#[inline(never)]
fn mismatch(ty: &AvroType, value: &Value) -> DatumError {
    match (ty, value) {
        (AvroType::Fixed(f), Value::Fixed(b)) => {
            invalid(format!("fixed \"{}\" has {} bytes, value has {}", f.name, f.size, b.len()))
        }
        (AvroType::Enum(e), Value::Enum(i, symbol)) => {
            invalid(format!("enum \"{}\" has no symbol \"{symbol}\" at index {i}", e.name))
        }
        (AvroType::Union(branches), Value::Union(i, _)) => {
            invalid(format!("union branch {i} out of range ({} branches)", branches.len()))
        }
        _ => DatumError::new(
            DatumErrorKind::Mismatch { expected: ty.describe(), found: value_kind(value).to_string() },
            None,
        ),
    }
}

/// The kind of a [`Value`], for error messages.
pub(crate) fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int(_) => "int",
        Value::Long(_) => "long",
        Value::Float(_) => "float",
        Value::Double(_) => "double",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "string",
        Value::Fixed(_) => "fixed",
        Value::Enum(..) => "enum",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Record(_) => "record",
        Value::Union(..) => "union",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use apache_avro::types::Value as AValue;
    use std::collections::HashMap;

    /// Our value as an apache-avro value, for its encoder.
    pub(crate) fn to_apache(schema: &Schema, ty: &AvroType, v: &Value) -> AValue {
        let resolved = schema.resolve(ty);
        if let AvroType::Logical { base, attributes } = resolved {
            if attributes["logicalType"] == "decimal" {
                if let Value::Bytes(b) | Value::Fixed(b) = v {
                    return AValue::Decimal(apache_avro::Decimal::from(b));
                }
            }
            return to_apache(schema, base, v);
        }
        match (resolved, v) {
            (_, Value::Null) => AValue::Null,
            (_, Value::Boolean(b)) => AValue::Boolean(*b),
            (_, Value::Int(n)) => AValue::Int(*n),
            (_, Value::Long(n)) => AValue::Long(*n),
            (_, Value::Float(x)) => AValue::Float(*x),
            (_, Value::Double(x)) => AValue::Double(*x),
            (_, Value::Bytes(b)) => AValue::Bytes(b.clone()),
            (_, Value::String(s)) => AValue::String(s.clone()),
            (_, Value::Fixed(b)) => AValue::Fixed(b.len(), b.clone()),
            (_, Value::Enum(i, s)) => AValue::Enum(*i, s.clone()),
            (AvroType::Array(t), Value::Array(items)) => {
                AValue::Array(items.iter().map(|i| to_apache(schema, t, i)).collect())
            }
            (AvroType::Map(t), Value::Map(es)) => {
                AValue::Map(es.iter().map(|(k, v)| (k.clone(), to_apache(schema, t, v))).collect::<HashMap<_, _>>())
            }
            (AvroType::Record(r), Value::Record(fs)) => AValue::Record(
                r.fields.iter().zip(fs).map(|(f, (n, v))| (n.clone(), to_apache(schema, &f.ty, v))).collect(),
            ),
            (AvroType::Union(bs), Value::Union(i, v)) => {
                AValue::Union(*i, Box::new(to_apache(schema, &bs[*i as usize], v)))
            }
            (t, v) => panic!("test value {v:?} does not match {t:?}"),
        }
    }

    /// An apache-avro decoded value as ours (logical values back to their base encoding).
    pub(crate) fn from_apache(schema: &Schema, ty: &AvroType, v: AValue) -> Value {
        let ty = encoding_type(schema, ty).unwrap();
        match (ty, v) {
            (_, AValue::Null) => Value::Null,
            (_, AValue::Boolean(b)) => Value::Boolean(b),
            (_, AValue::Int(n) | AValue::Date(n) | AValue::TimeMillis(n)) => Value::Int(n),
            (
                _,
                AValue::Long(n)
                | AValue::TimestampMillis(n)
                | AValue::TimestampMicros(n)
                | AValue::TimestampNanos(n)
                | AValue::LocalTimestampMillis(n)
                | AValue::LocalTimestampMicros(n)
                | AValue::LocalTimestampNanos(n)
                | AValue::TimeMicros(n),
            ) => Value::Long(n),
            (_, AValue::Float(x)) => Value::Float(x),
            (_, AValue::Double(x)) => Value::Double(x),
            (AvroType::Fixed(_), AValue::Decimal(d)) => Value::Fixed(Vec::try_from(d).unwrap()),
            (_, AValue::Decimal(d)) => Value::Bytes(Vec::try_from(d).unwrap()),
            (_, AValue::Uuid(u)) => Value::String(u.to_string()),
            (_, AValue::Bytes(b)) => Value::Bytes(b),
            (_, AValue::String(s)) => Value::String(s),
            (_, AValue::Fixed(_, b)) => Value::Fixed(b),
            (_, AValue::Enum(i, s)) => Value::Enum(i, s),
            (AvroType::Array(t), AValue::Array(items)) => {
                Value::Array(items.into_iter().map(|i| from_apache(schema, t, i)).collect())
            }
            (AvroType::Map(t), AValue::Map(es)) => {
                Value::Map(es.into_iter().map(|(k, v)| (k, from_apache(schema, t, v))).collect())
            }
            (AvroType::Record(r), AValue::Record(fs)) => {
                Value::Record(r.fields.iter().zip(fs).map(|(f, (n, v))| (n, from_apache(schema, &f.ty, v))).collect())
            }
            (AvroType::Union(bs), AValue::Union(i, v)) => {
                Value::Union(i, Box::new(from_apache(schema, &bs[i as usize], *v)))
            }
            (t, v) => panic!("apache value {v:?} does not match {t:?}"),
        }
    }

    /// Sorts map entries, since apache-avro keeps maps in a HashMap.
    pub(crate) fn normalize(v: Value) -> Value {
        match v {
            Value::Map(mut es) => {
                es.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Map(es.into_iter().map(|(k, v)| (k, normalize(v))).collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
            Value::Record(fs) => Value::Record(fs.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
            Value::Union(i, v) => Value::Union(i, Box::new(normalize(*v))),
            v => v,
        }
    }

    fn s(x: &str) -> Value {
        Value::String(x.to_string())
    }

    fn rec(fields: Vec<(&str, Value)>) -> Value {
        Value::Record(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn list(values: &[i32]) -> Value {
        let mut next = Value::Union(0, Box::new(Value::Null));
        for v in values.iter().rev() {
            next = Value::Union(1, Box::new(rec(vec![("value", Value::Int(*v)), ("next", next)])));
        }
        match next {
            Value::Union(_, node) => *node,
            _ => unreachable!(),
        }
    }

    pub(crate) const MOVIE: &str = r#"{"type": "record", "name": "movie", "namespace": "film", "fields": [
        {"name": "title", "type": "string"},
        {"name": "year", "type": "int"},
        {"name": "rating", "type": ["null", "double"]},
        {"name": "cast", "type": {"type": "array", "items": {"type": "record", "name": "actor",
            "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}]}}},
        {"name": "tags", "type": {"type": "map", "values": "string"}},
        {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["DRAMA", "COMEDY", "HORROR"]}},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
        {"name": "flag", "type": "boolean"},
        {"name": "director", "type": "actor"}
    ]}"#;

    pub(crate) fn movie(cast: usize) -> Value {
        let actor = |i: usize| rec(vec![("name", s(&format!("actor {i} ✓"))), ("age", Value::Int(20 + i as i32))]);
        rec(vec![
            ("title", s("Le Voyage dans la Lune")),
            ("year", Value::Int(1902)),
            ("rating", Value::Union(1, Box::new(Value::Double(8.1)))),
            ("cast", Value::Array((0..cast).map(actor).collect())),
            ("tags", Value::Map(vec![("lang".into(), s("fr"))])),
            ("genre", Value::Enum(2, "HORROR".into())),
            ("hash", Value::Fixed(vec![1, 2, 3, 255])),
            ("flag", Value::Boolean(true)),
            ("director", actor(99)),
        ])
    }

    /// Schemas with values of them that survive natural JSON unchanged.
    pub(crate) fn cases() -> Vec<(&'static str, Vec<Value>)> {
        vec![
            ("\"null\"", vec![Value::Null]),
            ("\"boolean\"", vec![Value::Boolean(true), Value::Boolean(false)]),
            ("\"int\"", [0, 1, -1, 63, 64, -64, -65, 1 << 20, i32::MAX, i32::MIN].map(Value::Int).to_vec()),
            ("\"long\"", [0, -1, 1 << 40, i64::from(i32::MIN) - 1, i64::MAX, i64::MIN].map(Value::Long).to_vec()),
            ("\"float\"", [0.0, 1.5, -3.25e10, 0.1, f32::MAX, f32::MIN_POSITIVE].map(Value::Float).to_vec()),
            ("\"double\"", [0.0, -2.5, 1e300, 0.1, f64::MIN_POSITIVE].map(Value::Double).to_vec()),
            (
                "\"bytes\"",
                vec![Value::Bytes(vec![]), Value::Bytes(vec![0, 255, 1, 128]), Value::Bytes((0..=255).collect())],
            ),
            ("\"string\"", vec![s(""), s("hello"), s("héllo wörld ✓ 日本語 🎉 \u{0}"), s(&"long ".repeat(100))]),
            (
                r#"{"type": "record", "name": "Outer", "fields": [
                    {"name": "id", "type": "long"},
                    {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [
                        {"name": "a", "type": "int"}, {"name": "b", "type": "string"}]}},
                    {"name": "again", "type": "Inner"},
                    {"name": "empty", "type": {"type": "record", "name": "Empty", "fields": []}}
                ]}"#,
                vec![rec(vec![
                    ("id", Value::Long(-7)),
                    ("inner", rec(vec![("a", Value::Int(1)), ("b", s("x"))])),
                    ("again", rec(vec![("a", Value::Int(-300)), ("b", s(""))])),
                    ("empty", rec(vec![])),
                ])],
            ),
            (
                r#"{"type": "array", "items": "int"}"#,
                vec![
                    Value::Array(vec![]),
                    Value::Array(vec![Value::Int(1), Value::Int(-2), Value::Int(3)]),
                    Value::Array((0..200).map(Value::Int).collect()),
                ],
            ),
            (
                r#"{"type": "array", "items": {"type": "array", "items": "string"}}"#,
                vec![Value::Array(vec![
                    Value::Array(vec![s("a"), s("bc")]),
                    Value::Array(vec![]),
                    Value::Array(vec![s("ü")]),
                ])],
            ),
            (r#"{"type": "array", "items": "null"}"#, vec![Value::Array(vec![Value::Null; 5])]),
            (
                r#"{"type": "map", "values": "long"}"#,
                vec![
                    Value::Map(vec![]),
                    Value::Map(vec![("a".into(), Value::Long(1))]),
                    Value::Map(vec![
                        ("x".into(), Value::Long(1)),
                        ("y".into(), Value::Long(-1)),
                        ("ζ".into(), Value::Long(1 << 50)),
                    ]),
                ],
            ),
            (
                r#"{"type": "enum", "name": "Suit", "symbols": ["SPADES", "HEARTS", "DIAMONDS", "CLUBS"]}"#,
                vec![Value::Enum(0, "SPADES".into()), Value::Enum(3, "CLUBS".into())],
            ),
            (
                r#"{"type": "fixed", "name": "Md5", "size": 16}"#,
                vec![Value::Fixed((0..16).collect()), Value::Fixed(vec![255; 16])],
            ),
            (r#"["null", "string"]"#, vec![Value::Union(0, Box::new(Value::Null)), Value::Union(1, Box::new(s("x")))]),
            (
                r#"["null", "long", {"type": "record", "name": "P", "fields": [{"name": "x", "type": "double"}]}]"#,
                vec![
                    Value::Union(0, Box::new(Value::Null)),
                    Value::Union(1, Box::new(Value::Long(42))),
                    Value::Union(2, Box::new(rec(vec![("x", Value::Double(0.5))]))),
                ],
            ),
            (
                r#"{"type": "record", "name": "L", "fields": [
                    {"name": "date", "type": {"type": "int", "logicalType": "date"}},
                    {"name": "time", "type": {"type": "int", "logicalType": "time-millis"}},
                    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                    {"name": "tsu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                    {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
                    {"name": "fdec", "type": {"type": "fixed", "name": "Money", "size": 4, "logicalType": "decimal", "precision": 8, "scale": 2}},
                    {"name": "id", "type": {"type": "string", "logicalType": "uuid"}}
                ]}"#,
                vec![rec(vec![
                    ("date", Value::Int(19000)),
                    ("time", Value::Int(3_600_000)),
                    ("ts", Value::Long(1_700_000_000_000)),
                    ("tsu", Value::Long(-1)),
                    ("dec", Value::Bytes(vec![0x01, 0x02])),
                    ("fdec", Value::Fixed(vec![0xff, 0xff, 0xfe, 0x00])),
                    ("id", s("550e8400-e29b-41d4-a716-446655440000")),
                ])],
            ),
            (
                r#"{"type": "record", "name": "Outer", "namespace": "com.example", "fields": [
                    {"name": "color", "type": {"type": "enum", "name": "org.paint.Color", "symbols": ["RED", "BLUE"]}},
                    {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [
                        {"name": "c", "type": "org.paint.Color"}]}},
                    {"name": "inner2", "type": ["null", "com.example.Inner"]},
                    {"name": "inner3", "type": "Inner"}
                ]}"#,
                vec![rec(vec![
                    ("color", Value::Enum(1, "BLUE".into())),
                    ("inner", rec(vec![("c", Value::Enum(0, "RED".into()))])),
                    ("inner2", Value::Union(1, Box::new(rec(vec![("c", Value::Enum(1, "BLUE".into()))])))),
                    ("inner3", rec(vec![("c", Value::Enum(0, "RED".into()))])),
                ])],
            ),
            (
                r#"{"type": "record", "name": "Node", "fields": [
                    {"name": "value", "type": "int"},
                    {"name": "next", "type": ["null", "Node"]}
                ]}"#,
                vec![list(&[1]), list(&[1, 2]), list(&[5, -4, 3, 2, 1])],
            ),
            (MOVIE, vec![movie(0), movie(1), movie(3)]),
        ]
    }

    fn check_no_panic_on_bad_input(schema: &Schema, bytes: &[u8]) {
        // Every strict prefix is an incomplete datum.
        for len in 0..bytes.len() {
            let prefix = &bytes[..len];
            assert!(validate(schema, prefix).is_err(), "prefix {len} of {bytes:?} validated");
            assert!(decode_datum(schema, prefix).is_err(), "prefix {len} decoded");
            let mut r = Reader::new(prefix);
            let skipped = skip(schema, &schema.root, &mut r);
            assert!(skipped.is_err() || !r.is_at_end() || len == 0 && bytes.is_empty());
            if let Some(record) = schema.root_record() {
                assert!(field_ranges(schema, record, prefix).is_err());
            }
        }
        // Trailing bytes are an error.
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(matches!(validate(schema, &longer).unwrap_err().kind(), DatumErrorKind::TrailingBytes(1)));
        // Corrupted bytes may decode or not, but never panic.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ bytes.len() as u64;
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bad = bytes.to_vec();
            if bad.is_empty() {
                bad.push(seed as u8);
            } else {
                let at = (seed >> 8) as usize % bad.len();
                bad[at] = (seed >> 32) as u8;
            }
            let _ = validate(schema, &bad);
            let _ = decode_datum(schema, &bad);
            let _ = skip(schema, &schema.root, &mut Reader::new(&bad));
            if let Some(record) = schema.root_record() {
                let _ = field_ranges(schema, record, &bad);
            }
        }
    }

    #[test]
    fn agrees_with_apache_avro_both_ways() {
        for (json, values) in cases() {
            let ours = Schema::parse(json).unwrap();
            let theirs = apache_avro::Schema::parse_str(json).unwrap();
            for value in values {
                let expected = normalize(value.clone());
                // apache-avro encodes, we decode.
                let their_bytes = apache_avro::to_avro_datum(&theirs, to_apache(&ours, &ours.root, &value))
                    .unwrap_or_else(|e| panic!("apache encode {value:?}: {e}"));
                let decoded = decode_datum(&ours, &their_bytes).unwrap_or_else(|e| panic!("{json}: {e}"));
                assert_eq!(normalize(decoded), expected, "{json}");
                validate(&ours, &their_bytes).unwrap();
                // We encode, apache-avro decodes.
                let our_bytes = encode_datum(&ours, &value).unwrap();
                let back = apache_avro::from_avro_datum(&theirs, &mut &our_bytes[..], None)
                    .unwrap_or_else(|e| panic!("apache decode of {value:?}: {e}"));
                assert_eq!(normalize(from_apache(&ours, &ours.root, back)), expected, "{json}");
                if !matches!(&value, Value::Map(es) if es.len() > 1) {
                    assert_eq!(our_bytes, their_bytes, "{json} {value:?}");
                }
                // Skipping covers exactly the datum.
                let mut r = Reader::new(&our_bytes);
                skip(&ours, &ours.root, &mut r).unwrap();
                assert!(r.is_at_end());
                check_no_panic_on_bad_input(&ours, &our_bytes);
            }
        }
    }

    #[test]
    fn field_ranges_project_like_apache_avro() {
        let ours = Schema::parse(MOVIE).unwrap();
        let record = ours.root_record().unwrap();
        for cast in [0, 1, 5] {
            let value = movie(cast);
            let bytes = encode_datum(&ours, &value).unwrap();
            let ranges = field_ranges(&ours, record, &bytes).unwrap();
            assert_eq!(ranges.len(), record.fields.len());
            assert_eq!(ranges.first().unwrap().start, 0);
            assert_eq!(ranges.last().unwrap().end, bytes.len());
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
            let mut reused = vec![0..1; 20];
            field_ranges_into(&ours, record, &bytes, &mut reused).unwrap();
            assert_eq!(reused, ranges);

            // Project to a new order, with the definition of "actor" now after a use of it.
            let order = [8, 1, 3, 0, 7, 5];
            let projected: Vec<u8> = order.iter().flat_map(|&i| bytes[ranges[i].clone()].to_vec()).collect();
            let fields = order.iter().map(|&i| record.fields[i].clone()).collect();
            let out = Schema::record("film.movie_out", fields, &ours).unwrap();
            let out_json = out.to_json();
            let theirs = apache_avro::Schema::parse_str(&out_json).unwrap_or_else(|e| panic!("{e}: {out_json}"));
            let Value::Record(all) = &value else { unreachable!() };
            let projected_value = Value::Record(order.iter().map(|&i| all[i].clone()).collect());
            let expected = apache_avro::to_avro_datum(&theirs, to_apache(&out, &out.root, &projected_value)).unwrap();
            assert_eq!(projected, expected);
            assert_eq!(decode_datum(&out, &projected).unwrap(), projected_value);
            let reparsed = Schema::parse(&out_json).unwrap();
            assert_eq!(decode_datum(&reparsed, &projected).unwrap(), projected_value);
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        let schema = Schema::parse(MOVIE).unwrap();
        let bytes = encode_datum(&schema, &movie(3)).unwrap();
        // Cut inside the name of the third actor.
        let ranges = field_ranges(&schema, schema.root_record().unwrap(), &bytes).unwrap();
        let cast = &bytes[ranges[3].clone()];
        let third = cast.windows(9).position(|w| w == b"actor 2 \xe2").unwrap();
        let cut = ranges[3].start + third + 2;
        let e = validate(&schema, &bytes[..cut]).unwrap_err();
        assert_eq!(e.path(), "cast[2].name");
        assert!(
            e.to_string().starts_with("field \"cast[2].name\": length 11 is larger than the 2 bytes remaining at byte"),
            "{e}"
        );
        let e = decode_datum(&schema, &bytes[..ranges[1].start]).unwrap_err();
        assert_eq!(e.to_string(), format!("field \"year\": unexpected end of datum at byte {}", ranges[1].start));
        // Bad union branch in "rating".
        let mut bad = bytes.clone();
        bad[ranges[2].start] = 4; // branch 2
        let e = validate(&schema, &bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("field \"rating\": union branch 2 out of range (2 branches) at byte {}", ranges[2].start)
        );
        // Bad enum index.
        let mut bad = bytes.clone();
        bad[ranges[5].start] = 6;
        let e = decode_datum(&schema, &bad).unwrap_err();
        assert!(e.to_string().contains("field \"genre\": enum index 3 out of range (3 symbols)"), "{e}");
        // Bad boolean: validate notices, skip does not look.
        let mut bad = bytes.clone();
        bad[ranges[7].start] = 2;
        assert!(validate(&schema, &bad).unwrap_err().to_string().contains("field \"flag\": boolean byte is 0x02"));
        assert!(field_ranges(&schema, schema.root_record().unwrap(), &bad).is_ok());
        // Invalid UTF-8: same.
        let mut bad = bytes.clone();
        bad[ranges[0].start + 1] = 0xff;
        assert!(validate(&schema, &bad)
            .unwrap_err()
            .to_string()
            .contains("field \"title\": string is not valid UTF-8"));
        assert!(field_ranges(&schema, schema.root_record().unwrap(), &bad).is_ok());
        // Map keys appear in paths.
        let map = Schema::parse(r#"{"type": "map", "values": "int"}"#).unwrap();
        let e = decode_datum(&map, &[2, 2, b'k', 0x80]).unwrap_err();
        assert_eq!(e.to_string(), r#"field "["k"]": unexpected end of datum at byte 3"#);
    }

    #[test]
    fn varints() {
        let int = Schema::parse("\"int\"").unwrap();
        let long = Schema::parse("\"long\"").unwrap();
        assert_eq!(decode_datum(&int, &[0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap(), Value::Int(i32::MIN));
        assert_eq!(decode_datum(&int, &[0xfe, 0xff, 0xff, 0xff, 0x0f]).unwrap(), Value::Int(i32::MAX));
        let e = decode_datum(&int, &[0xff, 0xff, 0xff, 0xff, 0x1f]).unwrap_err();
        assert_eq!(e.kind(), &DatumErrorKind::VarintOverflow);
        assert!(decode_datum(&int, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        let mut max = vec![0xff; 9];
        max.push(0x01);
        max[0] = 0xfe;
        assert_eq!(decode_datum(&long, &max).unwrap(), Value::Long(i64::MAX));
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(decode_datum(&long, &over).unwrap_err().kind(), &DatumErrorKind::VarintOverflow);
        assert!(decode_datum(&long, &[0xff; 11]).is_err());
        // Non-minimal encodings still read.
        assert_eq!(decode_datum(&int, &[0x82, 0x80, 0x00]).unwrap(), Value::Int(1));
        let mut out = Vec::new();
        for n in [0, 1, -1, 1000, -1000, i64::MAX, i64::MIN] {
            out.clear();
            write_long(&mut out, n);
            assert_eq!(Reader::new(&out).read_long().unwrap(), n);
        }
    }

    #[test]
    fn hostile_lengths_and_counts() {
        let string = Schema::parse("\"string\"").unwrap();
        let e = decode_datum(&string, &[0x01]).unwrap_err();
        assert_eq!(e.kind(), &DatumErrorKind::NegativeLength(-1));
        let mut huge = Vec::new();
        write_long(&mut huge, i64::MAX);
        let e = decode_datum(&string, &huge).unwrap_err();
        assert!(matches!(e.kind(), DatumErrorKind::LengthTooLarge { .. }), "{e}");

        let ints = Schema::parse(r#"{"type": "array", "items": "int"}"#).unwrap();
        let mut bytes = Vec::new();
        write_long(&mut bytes, 1 << 60);
        bytes.extend([2; 10]);
        let e = decode_datum(&ints, &bytes).unwrap_err();
        assert!(matches!(e.kind(), DatumErrorKind::CountTooLarge { .. }), "{e}");
        assert!(skip(&ints, &ints.root, &mut Reader::new(&bytes)).is_err());
        // i64::MIN as a block count cannot be negated in i64.
        let mut bytes = Vec::new();
        write_long(&mut bytes, i64::MIN);
        bytes.extend([0, 0]);
        assert!(decode_datum(&ints, &bytes).is_err());

        // Zero-byte items: a few are fine, billions are not.
        let nulls = Schema::parse(r#"{"type": "array", "items": "null"}"#).unwrap();
        assert_eq!(decode_datum(&nulls, &[10, 0]).unwrap(), Value::Array(vec![Value::Null; 5]));
        let mut bytes = Vec::new();
        write_long(&mut bytes, 1 << 40);
        bytes.push(0);
        assert!(decode_datum(&nulls, &bytes).is_err());
        assert!(validate(&nulls, &bytes).is_err());
        // Nor can many blocks, or nested arrays, add up to a huge number.
        let nested = Schema::parse(r#"{"type": "array", "items": {"type": "array", "items": "null"}}"#).unwrap();
        let mut bytes = Vec::new();
        write_long(&mut bytes, 1000);
        for _ in 0..1000 {
            write_long(&mut bytes, 60000);
            bytes.push(0);
        }
        bytes.push(0);
        assert!(matches!(validate(&nested, &bytes).unwrap_err().kind(), DatumErrorKind::CountTooLarge { .. }));
    }

    #[test]
    fn blocks_with_byte_sizes() {
        let schema = Schema::parse(r#"{"type": "array", "items": "string"}"#).unwrap();
        // Two blocks: one with a byte size (count -2), one without.
        let mut bytes = Vec::new();
        write_long(&mut bytes, -2);
        write_long(&mut bytes, 5);
        bytes.extend([2, b'a', 4, b'b', b'c']);
        write_long(&mut bytes, 1);
        bytes.extend([2, b'd', 0]);
        let expected =
            Value::Array(vec![Value::String("a".into()), Value::String("bc".into()), Value::String("d".into())]);
        assert_eq!(decode_datum(&schema, &bytes).unwrap(), expected);
        validate(&schema, &bytes).unwrap();
        let mut r = Reader::new(&bytes);
        skip(&schema, &schema.root, &mut r).unwrap();
        assert!(r.is_at_end());
        check_no_panic_on_bad_input(&schema, &bytes);

        // A byte size that disagrees with the items.
        let mut wrong = bytes.clone();
        wrong[1] = 8; // size 4
        let e = validate(&schema, &wrong).unwrap_err();
        assert!(matches!(e.kind(), DatumErrorKind::BlockSizeMismatch { declared: 4, actual: 5 }), "{e}");
        assert!(decode_datum(&schema, &wrong).is_err());

        // Maps too.
        let map = Schema::parse(r#"{"type": "map", "values": "int"}"#).unwrap();
        let bytes = [1, 6, 2, b'k', 14, 0];
        assert_eq!(decode_datum(&map, &bytes).unwrap(), Value::Map(vec![("k".into(), Value::Int(7))]));
        validate(&map, &bytes).unwrap();
        let mut r = Reader::new(&bytes);
        skip(&map, &map.root, &mut r).unwrap();
        assert!(r.is_at_end());
    }

    #[test]
    fn encode_checks_the_value() {
        let schema = Schema::parse(MOVIE).unwrap();
        // The error from encoding movie(2) after `change` to its fields.
        type Fields = Vec<(String, Value)>;
        let error = |change: &dyn Fn(&mut Fields)| {
            let mut value = movie(2);
            let Value::Record(fields) = &mut value else { unreachable!() };
            change(fields);
            encode_datum(&schema, &value).unwrap_err().to_string()
        };
        assert_eq!(
            error(&|f| f[2].1 = Value::Union(5, Box::new(Value::Null))),
            "field \"rating\": union branch 5 out of range (2 branches)"
        );
        assert_eq!(error(&|f| f[2].1 = Value::Double(1.0)), "field \"rating\": expected union, found double");
        assert_eq!(
            error(&|f| {
                let Value::Array(cast) = &mut f[3].1 else { unreachable!() };
                cast[1] = Value::Record(vec![("name".into(), Value::Int(3)), ("age".into(), Value::Int(3))]);
            }),
            "field \"cast[1].name\": expected string, found int"
        );
        assert!(error(&|f| drop(f.pop())).contains("has 9 fields, value has 8"));
        assert!(error(&|f| f[6].1 = Value::Fixed(vec![1, 2])).contains("field \"hash\": fixed"));
        assert!(error(&|f| f[5].1 = Value::Enum(0, "HORROR".into())).contains("field \"genre\""));
        assert!(error(&|f| f[0].0 = "name".into()).contains("value has field \"name\""));
    }

    fn long_list(n: usize) -> Vec<u8> {
        // value 0, then branch 1 (a node), ..., finally branch 0 (null).
        let mut bytes = Vec::new();
        for _ in 0..n - 1 {
            bytes.extend([0, 2]);
        }
        bytes.extend([0, 0]);
        bytes
    }

    #[test]
    fn recursion_is_capped() {
        let schema = Schema::parse(
            r#"{"type": "record", "name": "Node", "fields": [
                {"name": "value", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]}"#,
        )
        .unwrap();
        // Run on a stack as small as a wasm guest's (1 MiB) to show the cap is low enough;
        // unoptimized builds use several times more stack per level, so they get more.
        let stack = if cfg!(debug_assertions) { 4 << 20 } else { 1 << 20 };
        let schema2 = schema.clone();
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || {
                let schema = schema2;
                let ok = long_list(MAX_DEPTH);
                validate(&schema, &ok).unwrap();
                eprintln!("STEP validate(&schema, &o");
                let value = decode_datum(&schema, &ok).unwrap();
                eprintln!("STEP let value = decode_d");
                assert_eq!(encode_datum(&schema, &value).unwrap(), ok);
                eprintln!("STEP assert_eq!(encode_da");
                let json = crate::to_json(&schema, &schema.root, &value);
                eprintln!("STEP let json = crate::av");
                assert_eq!(crate::from_json(&schema, &schema.root, &json).unwrap(), value);
                eprintln!("STEP assert_eq!(crate::av");
                let record = schema.root_record().unwrap();
                field_ranges(&schema, record, &ok).unwrap();
                eprintln!("STEP field_ranges(&schema");
                let deep = long_list(MAX_DEPTH + 1);
                assert_eq!(validate(&schema, &deep).unwrap_err().kind(), &DatumErrorKind::TooDeep);
                assert_eq!(decode_datum(&schema, &deep).unwrap_err().kind(), &DatumErrorKind::TooDeep);
                assert!(field_ranges(&schema, record, &deep).is_err());
                let mut very_deep = long_list(100_000);
                assert!(validate(&schema, &very_deep).is_err());
                very_deep.truncate(1000);
                assert!(decode_datum(&schema, &very_deep).is_err());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn unknown_named_type_is_an_error() {
        let schema = Schema::parse("\"int\"").unwrap();
        let ty = AvroType::Ref("Nope".into());
        let e = decode(&schema, &ty, &mut Reader::new(&[0])).unwrap_err();
        assert_eq!(e.to_string(), "unknown named type \"Nope\" at byte 0");
        assert!(encode(&schema, &ty, &Value::Null, &mut Vec::new()).is_err());
    }
}
