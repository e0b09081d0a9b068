//! A change chunk read from its raw bytes, before automerge's parser sees it.
//!
//! automerge expands what a change declares: a run-length-encoded column of a
//! few bytes can declare 2^60 operations, and a compressed chunk inflates
//! without a limit. Bytes from a peer therefore pass [`inspect`] first, which
//! reads the header (hash, dependencies, actor, sequence number) and walks the
//! operation columns' run headers without expanding them: O(n) work and O(1)
//! memory beyond the dependency list for a chunk of n bytes. It refuses
//! compressed chunks and columns, and any column declaring more rows than the
//! chunk has bytes. A change that passes costs automerge at most O(n) to parse
//! and decode (every declared operation is backed by at least a byte).

use sha2::{Digest as _, Sha256};

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHANGE_CHUNK: u8 = 1;
/// An actor id of this product: an ed25519 public key.
const ACTOR_BYTES: u64 = 32;

/// Why raw change bytes are refused. Nothing was parsed further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RawChangeError {
    /// The bytes end before what they declare.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// Not an automerge chunk.
    #[error("not an automerge chunk")]
    BadMagic,
    /// A chunk of another type (2 is a compressed change: refused, never inflated).
    #[error("chunk type {0} refused: only uncompressed change chunks are accepted")]
    ChunkType(u8),
    /// The chunk's declared length is not its actual length.
    #[error("chunk declares {declared} bytes, has {actual}")]
    Length {
        /// Declared body length.
        declared: u64,
        /// Actual body length.
        actual: usize,
    },
    /// The checksum is not the first bytes of the chunk's hash.
    #[error("checksum mismatch")]
    Checksum,
    /// A variable-length integer is malformed or too long.
    #[error("malformed integer at byte {0}")]
    Integer(usize),
    /// More dependencies than a change of a writer's chain has (at most one).
    #[error("{0} dependencies; a chain change has at most one")]
    Dependencies(u64),
    /// The actor id is not a 32-byte node id.
    #[error("actor id of {0} bytes; a node id has 32")]
    Actor(u64),
    /// The change names actors other than its author.
    #[error("the change names {0} other actors")]
    OtherActors(u64),
    /// A column is compressed.
    #[error("column {0:#x} is compressed")]
    DeflatedColumn(u32),
    /// The columns' declared lengths run past the data.
    #[error("columns declare more bytes than the change holds")]
    ColumnOverrun,
    /// A column declares more rows than the chunk has bytes.
    #[error("column {spec:#x} declares over {limit} rows in a change of {limit} bytes")]
    TooManyRows {
        /// The column's spec.
        spec: u32,
        /// The limit: the chunk's length in bytes.
        limit: u64,
    },
    /// The message is not UTF-8.
    #[error("the message is not UTF-8")]
    Message,
}

/// What the raw header of a change says, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawChange {
    /// The change's hash (SHA-256 over chunk type, length and body, as automerge computes it).
    pub hash: [u8; 32],
    /// The hash of the change it follows (none for the first of an epoch).
    pub dep: Option<[u8; 32]>,
    /// The author: a 32-byte node id.
    pub actor: [u8; 32],
    /// The sequence number in its document.
    pub seq: u64,
    /// The most rows any operation column declares.
    pub max_rows: u64,
}

/// A cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn uleb(&mut self) -> Result<u64, RawChangeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self
                .bytes
                .get(self.at + i)
                .ok_or(RawChangeError::Truncated(self.at + i))?;
            if i == 9 && b > 1 {
                return Err(RawChangeError::Integer(self.at));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.at += i + 1;
                return Ok(v);
            }
        }
        Err(RawChangeError::Integer(self.at))
    }

    fn sleb(&mut self) -> Result<i64, RawChangeError> {
        let mut v = 0i64;
        for i in 0..10 {
            let b = *self
                .bytes
                .get(self.at + i)
                .ok_or(RawChangeError::Truncated(self.at + i))?;
            v |= i64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i < 9 && b & 0x40 != 0 {
                    v |= -1i64 << (7 * (i + 1));
                }
                self.at += i + 1;
                return Ok(v);
            }
        }
        Err(RawChangeError::Integer(self.at))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], RawChangeError> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.at.checked_add(n))
            .filter(|&e| e <= self.bytes.len())
            .ok_or(RawChangeError::Truncated(self.bytes.len()))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

/// The value type of a run-length-encoded column, to skip one value.
#[derive(Clone, Copy)]
enum Value {
    Unsigned,
    Signed,
    Text,
}

/// Rows of a run-length-encoded column, counted without expanding it.
fn rle_rows(data: &[u8], value: Value, limit: u64, spec: u32) -> Result<u64, RawChangeError> {
    let mut r = Reader { bytes: data, at: 0 };
    let mut rows = 0u64;
    let over = || RawChangeError::TooManyRows { spec, limit };
    while !r.done() {
        let header = r.sleb()?;
        let (run, values) = match header {
            n if n > 0 => (n.unsigned_abs(), 1),
            n if n < 0 => (n.unsigned_abs(), n.unsigned_abs()),
            _ => (r.uleb()?, 0),
        };
        rows = rows
            .checked_add(run)
            .filter(|&x| x <= limit)
            .ok_or_else(over)?;
        // `values <= rows <= limit`, and each value takes at least a byte.
        for _ in 0..values {
            match value {
                Value::Unsigned => {
                    r.uleb()?;
                }
                Value::Signed => {
                    r.sleb()?;
                }
                Value::Text => {
                    let len = r.uleb()?;
                    r.take(len)?;
                }
            }
        }
    }
    Ok(rows)
}

/// Rows of a boolean column: alternating run lengths.
fn boolean_rows(data: &[u8], limit: u64, spec: u32) -> Result<u64, RawChangeError> {
    let mut r = Reader { bytes: data, at: 0 };
    let mut rows = 0u64;
    while !r.done() {
        let run = r.uleb()?;
        rows = rows
            .checked_add(run)
            .filter(|&x| x <= limit)
            .ok_or(RawChangeError::TooManyRows { spec, limit })?;
    }
    Ok(rows)
}

/// Reads and checks the raw change chunk `bytes` (see the module doc).
pub fn inspect(bytes: &[u8]) -> Result<RawChange, RawChangeError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != MAGIC {
        return Err(RawChangeError::BadMagic);
    }
    let checksum: [u8; 4] = r
        .take(4)?
        .try_into()
        .map_err(|_| RawChangeError::Truncated(4))?;
    let chunk_type = r.take(1)?[0];
    if chunk_type != CHANGE_CHUNK {
        return Err(RawChangeError::ChunkType(chunk_type));
    }
    let declared = r.uleb()?;
    let body_at = r.at;
    let actual = bytes.len() - body_at;
    if declared != actual as u64 {
        return Err(RawChangeError::Length { declared, actual });
    }
    // automerge hashes the chunk type, the minimal encoding of the length and the body.
    let mut len = Vec::with_capacity(10);
    let mut n = declared;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            len.push(b);
            break;
        }
        len.push(b | 0x80);
    }
    let hash: [u8; 32] = Sha256::new()
        .chain_update([chunk_type])
        .chain_update(&len)
        .chain_update(&bytes[body_at..])
        .finalize()
        .into();
    if hash[..4] != checksum || len.len() != body_at - 9 {
        return Err(RawChangeError::Checksum);
    }
    let deps = r.uleb()?;
    if deps > 1 {
        return Err(RawChangeError::Dependencies(deps));
    }
    let dep = match deps {
        1 => Some(
            r.take(32)?
                .try_into()
                .map_err(|_| RawChangeError::Truncated(r.at))?,
        ),
        _ => None,
    };
    let actor_len = r.uleb()?;
    if actor_len != ACTOR_BYTES {
        return Err(RawChangeError::Actor(actor_len));
    }
    let actor: [u8; 32] = r
        .take(32)?
        .try_into()
        .map_err(|_| RawChangeError::Truncated(r.at))?;
    let seq = r.uleb()?;
    let _start_op = r.uleb()?;
    let _time = r.sleb()?;
    let message_len = r.uleb()?;
    std::str::from_utf8(r.take(message_len)?).map_err(|_| RawChangeError::Message)?;
    let others = r.uleb()?;
    if others != 0 {
        return Err(RawChangeError::OtherActors(others));
    }
    let columns = r.uleb()?;
    let limit = bytes.len() as u64;
    // Each column's metadata takes at least two bytes: bounds the loop by n.
    if columns > (bytes.len() - r.at) as u64 / 2 {
        return Err(RawChangeError::ColumnOverrun);
    }
    let mut specs = Vec::with_capacity(columns as usize);
    let mut total = 0u64;
    for _ in 0..columns {
        let spec = u32::try_from(r.uleb()?).map_err(|_| RawChangeError::Integer(r.at))?;
        let len = r.uleb()?;
        total = total
            .checked_add(len)
            .ok_or(RawChangeError::ColumnOverrun)?;
        specs.push((spec, len));
    }
    if total > (bytes.len() - r.at) as u64 {
        return Err(RawChangeError::ColumnOverrun);
    }
    let mut max_rows = 0;
    for (spec, len) in specs {
        if spec & 0b1000 != 0 {
            return Err(RawChangeError::DeflatedColumn(spec));
        }
        let data = r.take(len)?;
        let rows = match spec & 0b111 {
            // Group, actor, integer and value-metadata columns: RLE of unsigned integers.
            0 | 1 | 2 | 6 => rle_rows(data, Value::Unsigned, limit, spec)?,
            // Delta integers: RLE of signed deltas.
            3 => rle_rows(data, Value::Signed, limit, spec)?,
            4 => boolean_rows(data, limit, spec)?,
            5 => rle_rows(data, Value::Text, limit, spec)?,
            // Raw values: their lengths come from the metadata column; no rows of their own.
            _ => 0,
        };
        max_rows = max_rows.max(rows);
    }
    Ok(RawChange {
        hash,
        dep,
        actor,
        seq,
        max_rows,
    })
}

#[cfg(test)]
#[path = "raw_change_tests.rs"]
mod tests;
