//! Protobuf wire primitives: the base-128 varint, read and written. A bottom
//! layer like [`crate::hex`]: it uses nothing else from the crate.

/// The most bytes a varint of a `u64` takes.
pub const MAX_VARINT_LEN: usize = 10;

/// Reads a protobuf varint at `at`, moving `at` past it.
///
/// # Errors
/// When the bytes end inside the varint, when it is longer than
/// [`MAX_VARINT_LEN`] bytes, or when its value does not fit in a `u64`.
pub fn varint(buf: &[u8], at: &mut usize) -> Result<u64, &'static str> {
    let mut v = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let b = *buf.get(*at).ok_or("a varint runs past the end")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            // The tenth byte holds only the 64th bit.
            if i == MAX_VARINT_LEN - 1 && b > 1 {
                return Err("a varint overflows 64 bits");
            }
            return Ok(v);
        }
    }
    Err("a varint is longer than 10 bytes")
}

/// Appends `v` as a protobuf varint.
pub fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(u8::try_from(v & 0x7f).unwrap_or(0) | 0x80);
        v >>= 7;
    }
    out.push(u8::try_from(v).unwrap_or(0));
}

#[cfg(test)]
mod tests {
    use super::{MAX_VARINT_LEN, put_varint, varint};

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(v, &mut out);
        out
    }

    /// Values round-trip through write and read, the cursor lands after the
    /// varint, and the encodings match the protobuf spec's examples.
    #[test]
    fn round_trips_and_matches_the_spec() {
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(150), [0x96, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX).len(), MAX_VARINT_LEN);
        for v in [
            0,
            1,
            127,
            128,
            150,
            300,
            1 << 35,
            i64::MAX.cast_unsigned(),
            u64::MAX,
        ] {
            let mut buf = enc(v);
            buf.push(0xff);
            let mut at = 0;
            assert_eq!(varint(&buf, &mut at), Ok(v), "{v}");
            assert_eq!(at, buf.len() - 1, "{v}: the cursor stops after the varint");
        }
    }

    /// Two varints in a row read one after the other.
    #[test]
    fn reads_in_sequence() {
        let mut buf = enc(300);
        buf.extend(enc(7));
        let mut at = 0;
        assert_eq!(varint(&buf, &mut at), Ok(300));
        assert_eq!(varint(&buf, &mut at), Ok(7));
        assert_eq!(at, buf.len());
    }

    /// Bytes that end with the continuation bit set are refused.
    #[test]
    fn truncated_is_an_error() {
        for buf in [&[][..], &[0x80], &[0xff, 0xff]] {
            let mut at = 0;
            assert_eq!(varint(buf, &mut at), Err("a varint runs past the end"), "{buf:?}");
        }
        let mut at = 3;
        assert!(varint(&[1, 2, 3], &mut at).is_err(), "starting at the end");
    }

    /// Eleven bytes are refused, even when the value would fit.
    #[test]
    fn longer_than_ten_bytes_is_an_error() {
        let mut buf = vec![0x80; MAX_VARINT_LEN];
        buf.push(0);
        assert_eq!(varint(&buf, &mut 0), Err("a varint is longer than 10 bytes"));
        let mut buf = vec![0xff; MAX_VARINT_LEN];
        buf.push(1);
        assert_eq!(varint(&buf, &mut 0), Err("a varint is longer than 10 bytes"));
        let mut ten = vec![0x80; MAX_VARINT_LEN - 1];
        ten.push(0);
        assert_eq!(
            varint(&ten, &mut 0),
            Ok(0),
            "ten bytes with a zero tail still read"
        );
    }

    /// A tenth byte above 1 sets bits past 64 and is refused.
    #[test]
    fn overflow_is_an_error() {
        let mut buf = vec![0xff; MAX_VARINT_LEN - 1];
        buf.push(0x01);
        assert_eq!(varint(&buf, &mut 0), Ok(u64::MAX));
        *buf.last_mut().unwrap() = 0x02;
        assert_eq!(varint(&buf, &mut 0), Err("a varint overflows 64 bits"));
    }

    /// The module stays a bottom layer: it names nothing else in the crate.
    #[test]
    fn uses_nothing_from_the_crate() {
        let src = include_str!("wire.rs");
        let code = src.split("#[cfg(test)]").next().unwrap();
        let uses = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//") && l.contains("crate::"));
        assert_eq!(uses.count(), 0);
    }
}
