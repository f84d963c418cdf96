//! Column values from their Postgres text form (what `pgoutput` and `COPY` send) to Avro.
//!
//! The text forms are Postgres's output functions with `DateStyle = ISO` and
//! `bytea_output = hex` (the defaults; the source checks them when it connects).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use meshhost_avro::Value;

use super::table::{enum_as_avro, ColumnType};

/// The Avro value of one non-NULL column value; `Err` says why it has none.
pub fn to_avro(ty: &ColumnType, text: &str) -> Result<Value, String> {
    Ok(match ty {
        ColumnType::Boolean => match text {
            "t" => Value::Boolean(true),
            "f" => Value::Boolean(false),
            _ => return Err(format!("{text:?} is not a boolean")),
        },
        ColumnType::Int16 | ColumnType::Int32 => Value::Int(parse(text)?),
        ColumnType::Int64 => Value::Long(parse(text)?),
        // Rust reads Postgres's NaN, Infinity and -Infinity as they are.
        ColumnType::Float32 => Value::Float(parse(text)?),
        ColumnType::Float64 => Value::Double(parse(text)?),
        ColumnType::Decimal { scale, .. } => Value::Bytes(decimal_bytes(text, *scale)?),
        ColumnType::NumericText | ColumnType::Text | ColumnType::Json | ColumnType::Uuid => {
            Value::String(text.to_string())
        }
        ColumnType::Bytes => Value::Bytes(bytea(text)?),
        ColumnType::Date => Value::Int(days_since_epoch(text)?),
        ColumnType::Time => Value::Long(time_micros(text)?),
        ColumnType::Timestamp => Value::Long(timestamp_micros(text)?),
        ColumnType::TimestampTz => Value::Long(timestamptz_micros(text)?),
        ColumnType::Enum { labels, .. } => match labels.iter().position(|label| label == text) {
            Some(index) if enum_as_avro(labels) => Value::Enum(index as u32, text.to_string()),
            Some(_) => Value::String(text.to_string()),
            None => return Err(format!("{text:?} is not a label the pipeline was planned with (re-plan it)")),
        },
        ColumnType::Array(item) => Value::Array(
            array_elements(text)?
                .into_iter()
                .map(|element| match element {
                    None => Ok(Value::Union(0, Box::new(Value::Null))),
                    Some(text) => to_avro(item, &text).map(|value| Value::Union(1, Box::new(value))),
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn parse<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{text:?} is out of range or not a number"))
}

/// A decimal text (`-12.5`) as the big-endian two's-complement bytes of its unscaled value at
/// `scale` (`-1250` at scale 2), as Avro's `decimal` holds it.
pub fn decimal_bytes(text: &str, scale: u32) -> Result<Vec<u8>, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} has no decimal form (NaN and infinities have none)"));
    }
    if fraction.len() > scale as usize && fraction[scale as usize..].bytes().any(|b| b != b'0') {
        return Err(format!("{text:?} has more than {scale} digits after the point"));
    }
    // The magnitude, base 256, most significant byte first.
    let mut magnitude: Vec<u8> = vec![0];
    let padded = (0..scale as usize).map(|i| fraction.as_bytes().get(i).copied().unwrap_or(b'0'));
    for digit in whole.bytes().chain(padded) {
        let mut carry = u32::from(digit - b'0');
        for byte in magnitude.iter_mut().rev() {
            let next = u32::from(*byte) * 10 + carry;
            *byte = next as u8;
            carry = next >> 8;
        }
        while carry > 0 {
            magnitude.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    // Room for the sign bit.
    if magnitude[0] & 0x80 != 0 {
        magnitude.insert(0, 0);
    }
    if negative && magnitude.iter().any(|&b| b != 0) {
        for byte in magnitude.iter_mut() {
            *byte = !*byte;
        }
        for byte in magnitude.iter_mut().rev() {
            let (sum, overflow) = byte.overflowing_add(1);
            *byte = sum;
            if !overflow {
                break;
            }
        }
    }
    // Shortest form: drop leading bytes that only repeat the sign.
    while magnitude.len() > 1
        && ((magnitude[0] == 0 && magnitude[1] & 0x80 == 0) || (magnitude[0] == 0xff && magnitude[1] & 0x80 != 0))
    {
        magnitude.remove(0);
    }
    Ok(magnitude)
}

/// `\x0a1b` (bytea's hex output) as bytes.
fn bytea(text: &str) -> Result<Vec<u8>, String> {
    let hex = text.strip_prefix("\\x").ok_or("bytea is not in hex form (set bytea_output = hex)")?;
    if hex.len() % 2 != 0 {
        return Err("bytea hex of odd length".into());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| format!("{:?} is not hex", &hex[i..i + 2])))
        .collect()
}

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();

/// A date or timestamp text without its ` BC` suffix, and whether it had one.
fn era(text: &str) -> Result<(&str, bool), String> {
    if text == "infinity" || text == "-infinity" {
        return Err(format!("{text} has no Avro form"));
    }
    Ok(match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    })
}

/// Year 1 BC is year 0 of the proleptic calendar chrono counts in.
fn astronomical(date: NaiveDate, bc: bool) -> Result<NaiveDate, String> {
    use chrono::Datelike;
    if !bc {
        return Ok(date);
    }
    date.with_year(1 - date.year()).ok_or_else(|| format!("{date} BC is out of range"))
}

fn days_since_epoch(text: &str) -> Result<i32, String> {
    let (date, bc) = era(text)?;
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|e| format!("{text:?}: {e}"))?;
    Ok((astronomical(date, bc)? - EPOCH).num_days() as i32)
}

fn time_micros(text: &str) -> Result<i64, String> {
    if text == "24:00:00" {
        return Ok(86_400_000_000);
    }
    let time = NaiveTime::parse_from_str(text, "%H:%M:%S%.f").map_err(|e| format!("{text:?}: {e}"))?;
    Ok((time - NaiveTime::MIN).num_microseconds().expect("a day fits"))
}

fn naive_timestamp(text: &str) -> Result<NaiveDateTime, String> {
    let (stamp, bc) = era(text)?;
    let parsed = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f").map_err(|e| format!("{text:?}: {e}"))?;
    Ok(astronomical(parsed.date(), bc)?.and_time(parsed.time()))
}

fn micros_since_epoch(at: NaiveDateTime) -> Result<i64, String> {
    (at - EPOCH.and_time(NaiveTime::MIN)).num_microseconds().ok_or_else(|| format!("{at} is out of range"))
}

fn timestamp_micros(text: &str) -> Result<i64, String> {
    micros_since_epoch(naive_timestamp(text)?)
}

/// `2024-01-31 12:00:00.5+05:30` (the offset `+HH`, `+HH:MM` or `+HH:MM:SS`) in UTC microseconds.
fn timestamptz_micros(text: &str) -> Result<i64, String> {
    let (stamp, bc) = era(text)?;
    let time_start = stamp.find(' ').ok_or_else(|| format!("{text:?} is not a timestamp"))?;
    let offset_at = stamp[time_start..]
        .rfind(['+', '-'])
        .map(|i| time_start + i)
        .ok_or_else(|| format!("{text:?} has no UTC offset"))?;
    let sign = if stamp.as_bytes()[offset_at] == b'-' { -1 } else { 1 };
    let mut offset_seconds = 0i64;
    for (part, unit) in stamp[offset_at + 1..].split(':').zip([3600, 60, 1]) {
        offset_seconds += parse::<i64>(part)? * unit;
    }
    let local = naive_timestamp(&format!("{}{}", &stamp[..offset_at], if bc { " BC" } else { "" }))?;
    Ok(micros_since_epoch(local)? - sign * offset_seconds * 1_000_000)
}

/// The elements of a one-dimensional array's text form (`{1,NULL,"a \"b\""}`); `None` is NULL.
pub fn array_elements(text: &str) -> Result<Vec<Option<String>>, String> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("{text:?} is not an array with default bounds"))?;
    let mut elements = Vec::new();
    if inner.is_empty() {
        return Ok(elements);
    }
    let mut chars = inner.chars().peekable();
    loop {
        let element = match chars.peek() {
            Some('"') => {
                chars.next();
                let mut element = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => element.extend(chars.next()),
                        Some('"') => break,
                        Some(c) => element.push(c),
                        None => return Err(format!("{text:?}: an unterminated quoted element")),
                    }
                }
                Some(element)
            }
            Some('{') => return Err(format!("{text:?}: multi-dimensional arrays have no Avro form here")),
            _ => {
                let mut element = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    element.push(c);
                    chars.next();
                }
                let element = element.trim();
                (!element.eq_ignore_ascii_case("NULL")).then(|| element.to_string())
            }
        };
        elements.push(element);
        match chars.next() {
            None => return Ok(elements),
            Some(',') => {}
            Some(c) => return Err(format!("{text:?}: unexpected {c:?} after an element")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_twos_complement_at_the_scale() {
        assert_eq!(decimal_bytes("0", 2).unwrap(), vec![0]);
        assert_eq!(decimal_bytes("1.27", 2).unwrap(), vec![0x7f]);
        assert_eq!(decimal_bytes("1.28", 2).unwrap(), vec![0x00, 0x80]);
        assert_eq!(decimal_bytes("-1.28", 2).unwrap(), vec![0x80]);
        assert_eq!(decimal_bytes("-1.29", 2).unwrap(), vec![0xff, 0x7f]);
        assert_eq!(decimal_bytes("-12.5", 2).unwrap(), (-1250i16).to_be_bytes().to_vec());
        assert_eq!(decimal_bytes("12", 3).unwrap(), 12000i16.to_be_bytes().to_vec());
        let big = "99999999999999999999999999999999999999";
        let expected = 99999999999999999999999999999999999999i128.to_be_bytes();
        let first = expected.iter().position(|&b| b != 0).unwrap();
        assert_eq!(decimal_bytes(big, 0).unwrap(), expected[first..].to_vec());
        assert!(decimal_bytes("NaN", 2).is_err());
        assert!(decimal_bytes("1.234", 2).is_err());
    }

    #[test]
    fn dates_and_times_count_from_the_epoch() {
        assert_eq!(days_since_epoch("1970-01-02").unwrap(), 1);
        assert_eq!(days_since_epoch("1969-12-31").unwrap(), -1);
        assert_eq!(days_since_epoch("0001-01-01 BC").unwrap(), days_since_epoch("0001-01-01").unwrap() - 366);
        assert!(days_since_epoch("infinity").is_err());
        assert_eq!(time_micros("00:00:01.5").unwrap(), 1_500_000);
        assert_eq!(time_micros("24:00:00").unwrap(), 86_400_000_000);
        assert_eq!(timestamp_micros("1970-01-01 00:00:00.000001").unwrap(), 1);
        assert_eq!(timestamptz_micros("1970-01-01 05:30:00+05:30").unwrap(), 0);
        assert_eq!(timestamptz_micros("1969-12-31 23:00:00-01").unwrap(), 0);
        assert_eq!(timestamptz_micros("2000-01-01 00:00:00+00").unwrap(), 946_684_800_000_000);
    }

    #[test]
    fn arrays_are_read_with_quotes_escapes_and_nulls() {
        assert_eq!(array_elements("{}").unwrap(), Vec::<Option<String>>::new());
        assert_eq!(
            array_elements(r#"{1,NULL,"a \"b\"","NULL"," x "}"#).unwrap(),
            vec![Some("1".into()), None, Some("a \"b\"".into()), Some("NULL".into()), Some(" x ".into())]
        );
        assert!(array_elements("{{1,2},{3,4}}").is_err());
        assert!(array_elements("[0:1]={1,2}").is_err());
    }

    #[test]
    fn scalars_convert() {
        assert_eq!(to_avro(&ColumnType::Float64, "-Infinity").unwrap(), Value::Double(f64::NEG_INFINITY));
        assert_eq!(to_avro(&ColumnType::Bytes, "\\x00ff").unwrap(), Value::Bytes(vec![0, 255]));
        assert_eq!(to_avro(&ColumnType::Int16, "-32768").unwrap(), Value::Int(-32768));
        assert!(to_avro(&ColumnType::Int32, "2147483648").is_err());
    }
}
