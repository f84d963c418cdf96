//! Avro values as CEL values, logical types included.
//!
//! | Avro | CEL |
//! |---|---|
//! | null, boolean | `null`, `bool` |
//! | int, long | `int` |
//! | float, double | `double` (a float widened exactly, as CEL widens a proto `float`) |
//! | string, enum | `string` (an enum is its symbol) |
//! | bytes, fixed | `bytes` |
//! | array, map, record | `list`, `map`, `map` keyed by field name |
//! | union | its branch's value |
//! | `timestamp-*`, `local-timestamp-*` | `timestamp` (a local timestamp is read as UTC) |
//! | `date` | `timestamp` at midnight UTC |
//! | `time-millis`, `time-micros` | `duration` since midnight |
//! | `decimal` | `double` (the nearest one) |
//! | `uuid` | `string` (a `fixed` uuid in its hyphenated form) |
//! | any other logical type | its base type's value |

use std::collections::HashMap;

use cel::common::types::{
    CelBool, CelBytes, CelDouble, CelDuration, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelTimestamp,
};
use cel::common::value::Val;
use meshhost_sdk::avro::{AvroType, Schema, Value};

/// CEL's timestamp range, in seconds since the epoch: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// How a logical type is surfaced in CEL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Logical {
    /// A point in time: the base value counts this many nanoseconds.
    Timestamp {
        nanos_per_unit: i64,
    },
    /// A time of day: the base value counts this many nanoseconds since midnight.
    TimeOfDay {
        nanos_per_unit: i64,
    },
    Decimal {
        scale: u32,
    },
    Uuid,
}

impl Logical {
    /// The CEL form of the logical type `attributes` describe, when it has one.
    pub fn of(attributes: &serde_json::Map<String, serde_json::Value>) -> Option<Logical> {
        const DAY: i64 = 86_400_000_000_000;
        Some(match attributes.get("logicalType")?.as_str()? {
            "timestamp-millis" | "local-timestamp-millis" => Logical::Timestamp { nanos_per_unit: 1_000_000 },
            "timestamp-micros" | "local-timestamp-micros" => Logical::Timestamp { nanos_per_unit: 1_000 },
            "timestamp-nanos" | "local-timestamp-nanos" => Logical::Timestamp { nanos_per_unit: 1 },
            "date" => Logical::Timestamp { nanos_per_unit: DAY },
            "time-millis" => Logical::TimeOfDay { nanos_per_unit: 1_000_000 },
            "time-micros" => Logical::TimeOfDay { nanos_per_unit: 1_000 },
            "decimal" => Logical::Decimal {
                scale: attributes.get("scale").and_then(serde_json::Value::as_u64).map_or(0, |s| s as u32),
            },
            "uuid" => Logical::Uuid,
            _ => return None,
        })
    }
}

/// Whether a timestamp this many nanoseconds since the epoch is in CEL's range.
pub fn in_range(nanos: i128) -> bool {
    (i128::from(MIN_SECONDS)..=i128::from(MAX_SECONDS)).contains(&nanos.div_euclid(1_000_000_000))
}

/// Nanoseconds since the epoch as a CEL timestamp; `Err` when outside CEL's range.
pub fn timestamp(nanos: i128) -> Result<CelTimestamp, String> {
    let seconds = nanos.div_euclid(1_000_000_000);
    let time = in_range(nanos)
        .then(|| chrono::DateTime::from_timestamp(seconds as i64, nanos.rem_euclid(1_000_000_000) as u32))
        .flatten()
        .ok_or_else(|| format!("{nanos} ns since the epoch is outside CEL's timestamp range (years 1 to 9999)"))?;
    Ok(CelTimestamp::from(time.fixed_offset()))
}

/// The nanoseconds since the epoch of a CEL timestamp.
pub fn nanos(timestamp: &chrono::DateTime<chrono::FixedOffset>) -> i128 {
    i128::from(timestamp.timestamp()) * 1_000_000_000 + i128::from(timestamp.timestamp_subsec_nanos())
}

/// A decoded Avro value of type `ty` as a CEL value. `Err` says why it has none (a timestamp
/// outside CEL's range, a decimal wider than 16 bytes).
pub fn to_cel(schema: &Schema, ty: &AvroType, value: Value) -> Result<Box<dyn Val>, String> {
    let ty = schema.resolve(ty);
    Ok(match (ty, value) {
        (AvroType::Logical { base, attributes }, value) => match (Logical::of(attributes), value) {
            (Some(Logical::Timestamp { nanos_per_unit }), Value::Long(n)) => {
                Box::new(timestamp(i128::from(n) * i128::from(nanos_per_unit))?)
            }
            (Some(Logical::Timestamp { nanos_per_unit }), Value::Int(n)) => {
                Box::new(timestamp(i128::from(n) * i128::from(nanos_per_unit))?)
            }
            (Some(Logical::TimeOfDay { nanos_per_unit }), Value::Int(n)) => {
                Box::new(CelDuration::from(chrono::Duration::nanoseconds(i64::from(n) * nanos_per_unit)))
            }
            (Some(Logical::TimeOfDay { nanos_per_unit }), Value::Long(n)) => {
                Box::new(CelDuration::from(chrono::Duration::nanoseconds(n.saturating_mul(nanos_per_unit))))
            }
            (Some(Logical::Decimal { scale }), Value::Bytes(b) | Value::Fixed(b)) => {
                Box::new(CelDouble::from(decimal(&b, scale)?))
            }
            (Some(Logical::Uuid), Value::Fixed(b)) if b.len() == 16 => Box::new(CelString::from(hyphenated(&b))),
            (_, value) => to_cel(schema, base, value)?,
        },
        (_, Value::Null) => Box::new(CelNull),
        (_, Value::Boolean(b)) => Box::new(CelBool::from(b)),
        (_, Value::Int(i)) => Box::new(CelInt::from(i64::from(i))),
        (_, Value::Long(l)) => Box::new(CelInt::from(l)),
        (_, Value::Float(f)) => Box::new(CelDouble::from(f64::from(f))),
        (_, Value::Double(d)) => Box::new(CelDouble::from(d)),
        (_, Value::Bytes(b) | Value::Fixed(b)) => Box::new(CelBytes::from(b)),
        (_, Value::String(s) | Value::Enum(_, s)) => Box::new(CelString::from(s)),
        (AvroType::Array(items), Value::Array(values)) => Box::new(CelList::from(
            values.into_iter().map(|v| to_cel(schema, items, v)).collect::<Result<Vec<_>, _>>()?,
        )),
        (AvroType::Map(values), Value::Map(entries)) => Box::new(CelMap::from(
            entries
                .into_iter()
                .map(|(k, v)| Ok((CelMapKey::from(k), to_cel(schema, values, v)?)))
                .collect::<Result<HashMap<_, _>, String>>()?,
        )),
        (AvroType::Record(record), Value::Record(entries)) => Box::new(CelMap::from(
            record
                .fields
                .iter()
                .zip(entries)
                .map(|(field, (name, v))| Ok((CelMapKey::from(name), to_cel(schema, &field.ty, v)?)))
                .collect::<Result<HashMap<_, _>, String>>()?,
        )),
        (AvroType::Union(branches), Value::Union(i, value)) => to_cel(schema, &branches[i as usize], *value)?,
        (ty, value) => unreachable!("a decoded {value:?} is a value of its type {ty:?}"),
    })
}

/// A decimal's two's-complement big-endian unscaled bytes, divided by 10^scale: the nearest double.
fn decimal(bytes: &[u8], scale: u32) -> Result<f64, String> {
    if bytes.len() > 16 {
        return Err(format!("a decimal of {} bytes is wider than CEL's filter reads (16 bytes)", bytes.len()));
    }
    let fill = if bytes.first().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 };
    let mut word = [fill; 16];
    word[16 - bytes.len()..].copy_from_slice(bytes);
    let unscaled = i128::from_be_bytes(word);
    // Parsing the decimal text rounds once, to the nearest double (dividing would round twice).
    Ok(format!("{unscaled}e-{scale}").parse().expect("an integer with an exponent is a float"))
}

fn hyphenated(b: &[u8]) -> String {
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_the_nearest_double() {
        assert_eq!(decimal(&[0x30, 0x39], 2), Ok(123.45));
        assert_eq!(decimal(&[0xcf, 0xc7], 2), Ok(-123.45));
        assert_eq!(decimal(&[], 0), Ok(0.0));
        assert_eq!(decimal(&[0x01], 0), Ok(1.0));
        assert!(decimal(&[0; 17], 0).is_err());
    }

    #[test]
    fn timestamps_stay_in_cels_range() {
        assert!(timestamp(i128::from(MAX_SECONDS) * 1_000_000_000 + 999_999_999).is_ok());
        assert!(timestamp(i128::from(MAX_SECONDS + 1) * 1_000_000_000).is_err());
        assert!(timestamp(i128::from(MIN_SECONDS) * 1_000_000_000).is_ok());
        assert!(timestamp(i128::from(MIN_SECONDS) * 1_000_000_000 - 1).is_err());
        let t = timestamp(-1).unwrap();
        assert_eq!(nanos(t.inner()), -1);
    }

    #[test]
    fn uuids_are_hyphenated() {
        let b: Vec<u8> = (0..16).collect();
        assert_eq!(hyphenated(&b), "00010203-0405-0607-0809-0a0b0c0d0e0f");
    }
}
