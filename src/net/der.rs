//! The few DER structures a fleet certificate needs, read from untrusted bytes:
//! bounded, never panicking, and only as much of X.509 as the verifier checks
//! (the signed part, the validity, the Ed25519 subject key and signature).

/// `AlgorithmIdentifier { id-Ed25519 }` (RFC 8410): the only algorithm accepted.
const ED25519_ALG: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION_TAG: u8 = 0xa0;

/// Why bytes are not a fleet certificate's DER.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DerError {
    /// Ran out of bytes, or a length points past them.
    #[error("truncated DER")]
    Truncated,
    /// A tag other than the one the structure requires.
    #[error("unexpected DER tag {found:#04x}, wanted {wanted:#04x}")]
    Tag {
        /// The tag required.
        wanted: u8,
        /// The tag found.
        found: u8,
    },
    /// Indefinite, non-minimal or over-long length encodings, and multi-byte tags.
    #[error("non-canonical DER length or tag")]
    NonCanonical,
    /// Bytes left after a complete structure.
    #[error("trailing bytes after DER structure")]
    Trailing,
    /// A key or signature algorithm other than Ed25519.
    #[error("not an Ed25519 key or signature")]
    NotEd25519,
    /// A version other than X.509 v3.
    #[error("not an X.509 v3 certificate")]
    Version,
    /// A validity time that is not a well-formed UTC time.
    #[error("malformed validity time")]
    Time,
}

/// A reader over a DER byte string.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    fn done(&self) -> Result<(), DerError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DerError::Trailing)
        }
    }

    /// One TLV: `(tag, content, whole encoding)`.
    fn any(&mut self) -> Result<(u8, &'a [u8], &'a [u8]), DerError> {
        let start = self.buf;
        let (&tag, rest) = start.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::NonCanonical);
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            // 0x80 is the indefinite form; more than 4 bytes is never needed here.
            if n == 0 || n > 4 || rest.len() < n {
                return Err(if rest.len() < n {
                    DerError::Truncated
                } else {
                    DerError::NonCanonical
                });
            }
            let (bytes, after) = rest.split_at(n);
            rest = after;
            let len = bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
            // Minimal: no leading zero byte, and the long form only from 128 on
            // (`bytes` has 1 to 4 bytes: checked above).
            if bytes[0] == 0 || len < 0x80 {
                return Err(DerError::NonCanonical);
            }
            len
        };
        if rest.len() < len {
            return Err(DerError::Truncated);
        }
        let (content, after) = rest.split_at(len);
        let header = start.len() - rest.len();
        let whole = &start[..header + len];
        self.buf = after;
        Ok((tag, content, whole))
    }

    /// One TLV of tag `wanted`: `(content, whole encoding)`.
    fn expect(&mut self, wanted: u8) -> Result<(&'a [u8], &'a [u8]), DerError> {
        let (tag, content, whole) = self.any()?;
        if tag != wanted {
            return Err(DerError::Tag { wanted, found: tag });
        }
        Ok((content, whole))
    }
}

/// What the verifier reads of a certificate. Nothing here is trusted until
/// [`Parsed::signature`] verified over [`Parsed::tbs`] under the fleet key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed<'a> {
    /// The signed part (`TBSCertificate`), as encoded.
    pub tbs: &'a [u8],
    /// The issuer's Ed25519 signature over `tbs`.
    pub signature: [u8; 64],
    /// The subject's Ed25519 public key.
    pub subject_key: [u8; 32],
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

/// Parses an Ed25519-signed X.509 v3 certificate with an Ed25519 subject key.
pub(crate) fn parse(der: &[u8]) -> Result<Parsed<'_>, DerError> {
    let mut outer = Reader::new(der);
    let (cert, _) = outer.expect(SEQUENCE)?;
    outer.done()?;
    let mut cert = Reader::new(cert);
    let (tbs_content, tbs) = cert.expect(SEQUENCE)?;
    let (_, alg) = cert.expect(SEQUENCE)?;
    if alg != ED25519_ALG {
        return Err(DerError::NotEd25519);
    }
    let (sig, _) = cert.expect(BIT_STRING)?;
    cert.done()?;
    let signature = match sig.split_first() {
        Some((0, bits)) => <[u8; 64]>::try_from(bits).map_err(|_| DerError::NotEd25519)?,
        _ => return Err(DerError::NotEd25519),
    };

    let mut t = Reader::new(tbs_content);
    if t.peek() != Some(VERSION_TAG) {
        return Err(DerError::Version);
    }
    let (version, _) = t.expect(VERSION_TAG)?;
    if version != [INTEGER, 0x01, 0x02] {
        return Err(DerError::Version);
    }
    t.expect(INTEGER)?; // serial
    let (_, inner_alg) = t.expect(SEQUENCE)?;
    if inner_alg != ED25519_ALG {
        return Err(DerError::NotEd25519);
    }
    t.expect(SEQUENCE)?; // issuer
    let (validity, _) = t.expect(SEQUENCE)?;
    let mut v = Reader::new(validity);
    let not_before = time(&mut v)?;
    let not_after = time(&mut v)?;
    v.done()?;
    t.expect(SEQUENCE)?; // subject
    let (spki, _) = t.expect(SEQUENCE)?;
    let mut s = Reader::new(spki);
    let (_, key_alg) = s.expect(SEQUENCE)?;
    if key_alg != ED25519_ALG {
        return Err(DerError::NotEd25519);
    }
    let (key, _) = s.expect(BIT_STRING)?;
    s.done()?;
    let subject_key = match key.split_first() {
        Some((0, bits)) => <[u8; 32]>::try_from(bits).map_err(|_| DerError::NotEd25519)?,
        _ => return Err(DerError::NotEd25519),
    };
    // Issuer/subject unique ids and extensions follow; the verifier needs none of them.
    Ok(Parsed {
        tbs,
        signature,
        subject_key,
        not_before,
        not_after,
    })
}

/// A `UTCTime` (`YYMMDDHHMMSSZ`) or `GeneralizedTime` (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn time(r: &mut Reader<'_>) -> Result<i64, DerError> {
    let (tag, s, _) = r.any()?;
    let (year, rest) = match (tag, s.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&s[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&s[..4])?, &s[4..]),
        _ => return Err(DerError::Time),
    };
    // Both forms leave exactly `MMDDHHMMSSZ`: 11 bytes, so the indexing below holds.
    if rest[10] != b'Z' {
        return Err(DerError::Time);
    }
    let (month, day) = (digits(&rest[0..2])?, digits(&rest[2..4])?);
    let (h, m, sec) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 59 {
        return Err(DerError::Time);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3_600 + m * 60 + sec)
}

fn digits(s: &[u8]) -> Result<i64, DerError> {
    s.iter().try_fold(0i64, |a, c| {
        if c.is_ascii_digit() {
            Ok(a * 10 + i64::from(c - b'0'))
        } else {
            Err(DerError::Time)
        }
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896);
    }

    #[test]
    fn times_and_lengths() {
        let mut r = Reader::new(b"\x17\x0d491231235959Z");
        assert_eq!(time(&mut r), Ok(2_524_607_999));
        let mut r = Reader::new(b"\x18\x0f99991231235959Z");
        assert_eq!(time(&mut r), Ok(253_402_300_799));
        for bad in [
            &b"\x17\x0d491231235959X"[..],
            b"\x17\x0d4912312359aaZ",
            b"\x17\x0d491331235959Z",
        ] {
            assert_eq!(time(&mut Reader::new(bad)), Err(DerError::Time));
        }
        // Indefinite, non-minimal, over-long and truncated lengths.
        for bad in [
            &b"\x30\x80"[..],
            b"\x30\x81\x05abcde",
            b"\x30\x85\x01",
            b"\x30\x05ab",
        ] {
            assert!(Reader::new(bad).any().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = parse(&bytes);
        }
    }
}
