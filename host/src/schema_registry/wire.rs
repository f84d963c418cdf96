//! The Confluent wire format of a value: the magic byte `0x00`, the schema id as a 4-byte
//! big-endian integer, then the datum.

/// The first byte of every framed value.
pub const MAGIC: u8 = 0;

/// Bytes before the datum.
pub const HEADER_LEN: usize = 5;

/// A value that is not in the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{0} bytes: too short for the Confluent wire format (magic byte and 4-byte schema id)")]
    TooShort(usize),
    #[error("magic byte {0:#04x}: not the Confluent wire format (0x00, then a 4-byte schema id)")]
    Magic(u8),
}

/// The schema id and the datum of a framed value.
pub fn split(value: &[u8]) -> Result<(u32, &[u8]), WireError> {
    if value.len() < HEADER_LEN {
        return Err(WireError::TooShort(value.len()));
    }
    if value[0] != MAGIC {
        return Err(WireError::Magic(value[0]));
    }
    let id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
    Ok((id, &value[HEADER_LEN..]))
}

/// `datum` framed with schema `id`.
pub fn frame(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_splits() {
        let framed = frame(258, b"\x02ab");
        assert_eq!(framed, b"\x00\x00\x00\x01\x02\x02ab");
        assert_eq!(split(&framed), Ok((258, &b"\x02ab"[..])));
        assert_eq!(split(&frame(7, b"")), Ok((7, &b""[..])));
    }

    #[test]
    fn refuses_other_bytes() {
        assert_eq!(split(b"\x01\x00\x00\x00\x01\x02"), Err(WireError::Magic(1)));
        assert_eq!(split(b"\x00\x00\x01"), Err(WireError::TooShort(3)));
    }
}
