//! A fast path for the usual shape of condition: top-level fields compared with literals
//! (`year >= 2000 && country == 'US'`, `updated > timestamp('2026-01-01T00:00:00Z')`), joined by
//! `&&`, `||` and `!`. Such a condition is
//! evaluated on the datum's bytes with no allocation. Anything else — another shape, or a record
//! where a field does not hold a value of its literal's kind (a null branch, an int compared with
//! a double) — is left undecided for the CEL interpreter, so results and errors stay exactly CEL's.

use std::ops::Range;

use cel::common::ast::{operators, Expr, IdedExpr, LiteralValue};
use meshhost_sdk::avro::{self, AvroType, Field, Reader, Schema};

use crate::values::{self, Logical};

/// A condition compiled for the fast path.
#[derive(Debug)]
pub enum Condition {
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    /// `fields[field] <op> literal`.
    Compare {
        field: usize,
        op: Op,
        literal: Literal,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug)]
pub enum Literal {
    Bool(bool),
    Int(i64),
    Double(f64),
    String(String),
    /// `timestamp('...')`, in nanoseconds since the epoch.
    Timestamp(i128),
}

/// A field's value as the fast path reads it; strings stay in the datum.
#[derive(Debug, Clone)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Double(f64),
    /// A string's bytes (valid UTF-8) in the datum.
    Str(Range<usize>),
    /// An enum symbol: the index into its type's symbols.
    Symbol(usize),
    /// A timestamp (or date) in CEL's range, in nanoseconds since the epoch.
    Timestamp(i128),
    /// Null, or a value the fast path does not compare.
    Other,
}

impl Condition {
    /// The fast form of `expr`, when it has one. `fields` are the input record's top-level
    /// fields; only comparisons of fields of scalar types qualify.
    pub fn compile(expr: &IdedExpr, schema: &Schema, fields: &[Field]) -> Option<Condition> {
        let Expr::Call(call) = &expr.expr else { return None };
        if call.target.is_some() {
            return None;
        }
        let compile = |e: &IdedExpr| Condition::compile(e, schema, fields).map(Box::new);
        match (call.func_name.as_str(), &call.args[..]) {
            (operators::LOGICAL_AND, [a, b]) => Some(Condition::And(compile(a)?, compile(b)?)),
            (operators::LOGICAL_OR, [a, b]) => Some(Condition::Or(compile(a)?, compile(b)?)),
            (operators::LOGICAL_NOT, [a]) => Some(Condition::Not(compile(a)?)),
            (name, [a, b]) => {
                let op = match name {
                    operators::EQUALS => Op::Eq,
                    operators::NOT_EQUALS => Op::Ne,
                    operators::LESS => Op::Lt,
                    operators::LESS_EQUALS => Op::Le,
                    operators::GREATER => Op::Gt,
                    operators::GREATER_EQUALS => Op::Ge,
                    _ => return None,
                };
                // `field op literal`, or `literal op field` turned around.
                let (field, op, literal) = match (&a.expr, &b.expr) {
                    (Expr::Ident(name), _) => (name, op, b),
                    (_, Expr::Ident(name)) => (name, op.flipped(), a),
                    _ => return None,
                };
                let field = fields.iter().position(|f| &f.name == field)?;
                if !is_scalar(schema, &fields[field].ty) {
                    return None;
                }
                let literal = match &literal.expr {
                    Expr::Literal(LiteralValue::Boolean(b)) if matches!(op, Op::Eq | Op::Ne) => Literal::Bool(**b),
                    Expr::Literal(LiteralValue::Int(i)) => Literal::Int(**i),
                    Expr::Literal(LiteralValue::Double(d)) => Literal::Double(**d),
                    Expr::Literal(LiteralValue::String(s)) => Literal::String(s.inner().to_string()),
                    Expr::Call(call) if is_timestamp_literal(call) => {
                        // CEL itself reads the text, so the fast path cannot read it differently.
                        match cel::Value::resolve(literal, &cel::Context::default()) {
                            Ok(cel::Value::Timestamp(t)) => Literal::Timestamp(values::nanos(&t)),
                            _ => return None,
                        }
                    }
                    _ => return None,
                };
                Some(Condition::Compare { field, op, literal })
            }
            _ => None,
        }
    }

    /// The condition's value for these field values, or `None` when CEL must decide.
    /// `value` is the datum the strings point into; `fields` give the enums' symbols.
    pub fn eval(&self, scalars: &[Scalar], value: &[u8], schema: &Schema, fields: &[Field]) -> Option<bool> {
        match self {
            // Like CEL, `false && x` is false and `true || x` true whatever x is, error included.
            Condition::And(a, b) => {
                match (a.eval(scalars, value, schema, fields), b.eval(scalars, value, schema, fields)) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                }
            }
            Condition::Or(a, b) => {
                match (a.eval(scalars, value, schema, fields), b.eval(scalars, value, schema, fields)) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                }
            }
            Condition::Not(a) => a.eval(scalars, value, schema, fields).map(|b| !b),
            Condition::Compare { field, op, literal } => {
                let ordering = match (&scalars[*field], literal) {
                    (Scalar::Bool(v), Literal::Bool(l)) => v.partial_cmp(l),
                    (Scalar::Int(v), Literal::Int(l)) => v.partial_cmp(l),
                    (Scalar::Double(v), Literal::Double(l)) => match v.partial_cmp(l) {
                        // NaN: unequal to everything, as in CEL; ordering it is CEL's error.
                        None => return matches!(op, Op::Eq | Op::Ne).then_some(*op == Op::Ne),
                        ordering => ordering,
                    },
                    (Scalar::Str(range), Literal::String(l)) => value[range.clone()].partial_cmp(l.as_bytes()),
                    (Scalar::Timestamp(v), Literal::Timestamp(l)) => v.partial_cmp(l),
                    (Scalar::Symbol(i), Literal::String(l)) => {
                        symbol(schema, &fields[*field].ty, *i)?.as_bytes().partial_cmp(l.as_bytes())
                    }
                    _ => return None,
                };
                let ordering = ordering?;
                Some(match op {
                    Op::Eq => ordering.is_eq(),
                    Op::Ne => ordering.is_ne(),
                    Op::Lt => ordering.is_lt(),
                    Op::Le => ordering.is_le(),
                    Op::Gt => ordering.is_gt(),
                    Op::Ge => ordering.is_ge(),
                })
            }
        }
    }
}

impl Op {
    /// The operator with its operands swapped: `2000 <= year` is `year >= 2000`.
    fn flipped(self) -> Op {
        match self {
            Op::Eq | Op::Ne => self,
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
        }
    }
}

/// `timestamp('...')`: a call of CEL's `timestamp` on a string literal.
fn is_timestamp_literal(call: &cel::common::ast::CallExpr) -> bool {
    call.func_name == "timestamp"
        && call.target.is_none()
        && matches!(&call.args[..], [arg] if matches!(arg.expr, Expr::Literal(LiteralValue::String(_))))
}

/// Whether the fast path can read a field of type `ty`: boolean, int, long, double, string,
/// enum, a timestamp or date, a logical type CEL sees as its base type (`uuid` on a string), or
/// a union of those and null.
fn is_scalar(schema: &Schema, ty: &AvroType) -> bool {
    match schema.resolve(ty) {
        AvroType::Boolean
        | AvroType::Int
        | AvroType::Long
        | AvroType::Double
        | AvroType::String
        | AvroType::Enum(_) => true,
        AvroType::Logical { base, attributes } => match Logical::of(attributes) {
            Some(Logical::Timestamp { .. }) => true,
            Some(Logical::TimeOfDay { .. } | Logical::Decimal { .. }) => false,
            Some(Logical::Uuid) | None => is_scalar(schema, base),
        },
        AvroType::Union(branches) => {
            branches.iter().all(|b| matches!(schema.resolve(b), AvroType::Null) || is_scalar(schema, b))
        }
        _ => false,
    }
}

/// Read a field of a scalar type (see [`is_scalar`]). A null comes back as [`Scalar::Other`]
/// (CEL decides it); a string that is not UTF-8 is an error, as when CEL's path decodes it.
pub fn read(schema: &Schema, ty: &AvroType, reader: &mut Reader) -> Result<Scalar, avro::DatumError> {
    Ok(match schema.resolve(ty) {
        AvroType::Boolean => Scalar::Bool(reader.read_boolean()?),
        AvroType::Int => Scalar::Int(i64::from(reader.read_int()?)),
        AvroType::Long => Scalar::Int(reader.read_long()?),
        AvroType::Double => Scalar::Double(reader.read_double()?),
        AvroType::String => {
            let text = reader.read_str()?;
            let end = reader.position();
            Scalar::Str(end - text.len()..end)
        }
        AvroType::Enum(e) => Scalar::Symbol(reader.read_enum_index(e.symbols.len())?),
        AvroType::Logical { base, attributes } => match (Logical::of(attributes), read(schema, base, reader)?) {
            // Outside CEL's range, the value is CEL's to refuse.
            (Some(Logical::Timestamp { nanos_per_unit }), Scalar::Int(n)) => {
                let nanos = i128::from(n) * i128::from(nanos_per_unit);
                if values::in_range(nanos) {
                    Scalar::Timestamp(nanos)
                } else {
                    Scalar::Other
                }
            }
            (Some(Logical::Timestamp { .. }), _) => Scalar::Other,
            (_, scalar) => scalar,
        },
        AvroType::Union(branches) => {
            let branch = &branches[reader.read_union_index(branches.len())?];
            match schema.resolve(branch) {
                AvroType::Null => Scalar::Other,
                _ => read(schema, branch, reader)?,
            }
        }
        other => {
            avro::skip(schema, other, reader)?;
            Scalar::Other
        }
    })
}

/// Symbol `index` of the enum a field of type `ty` holds (through a union, the first enum branch:
/// an enum read from a union is only compared when it is the union's one enum).
fn symbol<'a>(schema: &'a Schema, ty: &'a AvroType, index: usize) -> Option<&'a str> {
    match schema.resolve(ty) {
        AvroType::Enum(e) => e.symbols.get(index).map(String::as_str),
        AvroType::Logical { base, .. } => symbol(schema, base, index),
        AvroType::Union(branches) => {
            let mut enums = branches.iter().filter(|b| matches!(schema.resolve(b), AvroType::Enum(_)));
            match (enums.next(), enums.next()) {
                (Some(only), None) => symbol(schema, only, index),
                _ => None,
            }
        }
        _ => None,
    }
}
