//! Wire messages of the sync protocol and their encoding.
//!
//! A message is `[version: u8][flags: u8][postcard body]`; flag bit 0 means the
//! body is deflate-compressed. On a byte stream each message is preceded by its
//! length as a little-endian `u32` ([`frame`], [`FrameReader`]). Decoding
//! untrusted bytes never panics and never allocates more than [`MAX_MESSAGE`].

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::fleet::{SignedRoster, MAX_ROSTER_BYTES};
use crate::model::{NodeId, Position};
use crate::replica::{RangeSummary, WriterRange};

/// The protocol version this build speaks (3: fork proofs).
pub const VERSION: u8 = 3;
/// Largest message accepted, before and after decompression.
pub const MAX_MESSAGE: usize = 8 << 20;
// A signed roster, with its signature and framing, fits in one message.
const _: () = assert!(MAX_ROSTER_BYTES + 1024 < MAX_MESSAGE);
/// Bodies larger than this are deflate-compressed.
const COMPRESS_ABOVE: usize = 512;
const FLAG_DEFLATE: u8 = 1;

/// Why bytes from a peer are not a message. Nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than the two header bytes.
    #[error("message too short")]
    TooShort,
    /// Over [`MAX_MESSAGE`].
    #[error("message of {0} bytes is over the limit")]
    TooLarge(usize),
    /// A version this build does not speak.
    #[error("protocol version {0} is not supported (this build speaks {VERSION})")]
    UnknownVersion(u8),
    /// Unknown flag bits.
    #[error("unknown flags {0:#x}")]
    UnknownFlags(u8),
    /// The body does not decode.
    #[error("malformed body: {0}")]
    Malformed(String),
}

/// A writer's signature over its history up to a change: `sign(writer, epoch, seq, hash)`.
///
/// Each change names the previous one's hash, so a signature over a head
/// authenticates every earlier change of that epoch too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadSignature(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// One Automerge change, as bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeBytes(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// Consecutive changes of one writer's epoch, signed at the last one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// Whose changes.
    pub writer: NodeId,
    /// Which epoch of the writer's history.
    pub epoch: u32,
    /// Sequence number of the first change.
    pub first_seq: u64,
    /// Automerge change bytes, in sequence order; from the second on, the one
    /// dependency (the previous change's hash) is left out (see `bundle::pack`).
    pub changes: Vec<ChangeBytes>,
    /// The writer's signature over the last change.
    pub signature: HeadSignature,
}

/// A message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Anti-entropy probe: a digest of every writer head the sender holds.
    Digest {
        /// The wrapping sum of a 128-bit hash of every head, little-endian
        /// (see [`crate::replica::HeadIndex`]).
        digest: [u8; 16],
        /// Number of writers.
        writers: u32,
        /// The version of the fleet roster the sender holds (0: none).
        roster_version: u64,
        /// A digest of the writers the sender holds fork proofs of (0: none).
        forks: u64,
    },
    /// The sender's head for every writer it holds in `range`.
    Heads {
        /// The writers these heads cover.
        range: WriterRange,
        /// `(writer, position, hash)`, strictly ascending by writer, all in `range`.
        heads: Vec<(NodeId, Position, [u8; 32])>,
        /// True when answering a `Heads`: do not answer again.
        reply: bool,
    },
    /// Changes for the receiver to validate and apply.
    Changes(Bundle),
    /// The receiver processed a `Changes` message of this many bytes.
    Ack {
        /// Size of the acknowledged message.
        bytes: u32,
    },
    /// The sender's fleet roster, as the fleet authority signed it (appended
    /// last: the variants before it keep their wire tags).
    Roster(SignedRoster),
    /// The sender's summaries of the 16 sub-ranges of `range` (where the
    /// digests differ and the range holds too many writers to list).
    Summaries {
        /// The range split.
        range: WriterRange,
        /// One summary per sub-range, in prefix order: exactly 16.
        children: Vec<RangeSummary>,
    },
    /// Evidence that a writer signed two histories (see [`super::fork`]).
    Fork(super::fork::ForkProof),
    /// The sender refused `writer`'s changes up to `position` for a reason
    /// resending cannot cure: stop offering them (see `sync::refusal`).
    Refused {
        /// Whose changes.
        writer: NodeId,
        /// The last position of the refused bundle.
        position: Position,
        /// Why, as text (at most 256 bytes).
        reason: String,
    },
    /// The sender asks the receiver for some of its rights (see
    /// [`crate::rebalance`]; a build without it refuses this as malformed).
    RightsRequest(crate::rebalance::RightsRequest),
    /// The receiver of a [`Message::RightsRequest`] answers it.
    RightsAnswer(crate::rebalance::RightsAnswer),
}

/// Encodes `msg` (compressed when large).
pub fn encode(msg: &Message) -> Vec<u8> {
    // Serializing plain structs into a Vec cannot fail.
    let body = postcard::to_allocvec(msg).expect("message serializes");
    if body.len() > COMPRESS_ABOVE {
        let mut out = vec![VERSION, FLAG_DEFLATE];
        let mut enc = flate2::write::DeflateEncoder::new(&mut out, flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        enc.write_all(&body).expect("deflate into memory");
        enc.finish().expect("deflate into memory");
        if out.len() < body.len() + 2 {
            return out;
        }
    }
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&[VERSION, 0]);
    out.extend_from_slice(&body);
    out
}

/// Decodes one message of untrusted bytes.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let [version, flags, body @ ..] = bytes else {
        return Err(WireError::TooShort);
    };
    if *version != VERSION {
        return Err(WireError::UnknownVersion(*version));
    }
    match *flags {
        0 => postcard::from_bytes(body).map_err(|e| WireError::Malformed(e.to_string())),
        FLAG_DEFLATE => {
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(body)
                .take(MAX_MESSAGE as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| WireError::Malformed(e.to_string()))?;
            if out.len() > MAX_MESSAGE {
                return Err(WireError::TooLarge(out.len()));
            }
            postcard::from_bytes(&out).map_err(|e| WireError::Malformed(e.to_string()))
        }
        other => Err(WireError::UnknownFlags(other)),
    }
}

/// Prefixes an encoded message with its length, for a byte stream.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 4);
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message);
    out
}

/// Splits a byte stream into messages; refuses a length over [`MAX_MESSAGE`].
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, if any.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        let Some(len) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_MESSAGE {
            return Err(WireError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message::Changes(Bundle {
            writer: NodeId([4; 32]),
            epoch: 2,
            first_seq: 1,
            changes: vec![ChangeBytes(vec![1; 300]), ChangeBytes(vec![2; 300])],
            signature: HeadSignature(vec![9; 64]),
        })
    }

    #[test]
    fn round_trips_plain_and_compressed() {
        for m in [
            sample(),
            Message::Ack { bytes: 7 },
            Message::Digest {
                digest: [3; 16],
                writers: 4,
                roster_version: 7,
                forks: 9,
            },
            Message::Roster(SignedRoster {
                body: vec![5; 700],
                signature: vec![6; 64],
            }),
            Message::Heads {
                range: WriterRange::ALL,
                heads: vec![(NodeId([1; 32]), Position { epoch: 1, seq: 9 }, [3; 32])],
                reply: true,
            },
        ] {
            let bytes = encode(&m);
            assert_eq!(decode(&bytes).unwrap(), m);
        }
        assert_eq!(encode(&sample())[1], FLAG_DEFLATE);
    }

    #[test]
    fn hostile_bytes_are_typed_errors() {
        assert_eq!(decode(&[]), Err(WireError::TooShort));
        assert_eq!(decode(&[9, 0, 1]), Err(WireError::UnknownVersion(9)));
        assert_eq!(decode(&[VERSION, 4]), Err(WireError::UnknownFlags(4)));
        assert!(matches!(
            decode(&[VERSION, 0, 200, 200, 200]),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode(&[VERSION, FLAG_DEFLATE, 1, 2, 3]),
            Err(WireError::Malformed(_))
        ));
        // A deflate bomb: a small body that inflates past the limit.
        let big = vec![0u8; MAX_MESSAGE + 10];
        let mut out = vec![VERSION, FLAG_DEFLATE];
        let mut enc = flate2::write::DeflateEncoder::new(&mut out, flate2::Compression::best());
        enc.write_all(&big).unwrap();
        enc.finish().unwrap();
        assert!(out.len() < 100_000);
        assert!(matches!(decode(&out), Err(WireError::TooLarge(_))));
        // A declared vector length far beyond the bytes present.
        assert!(decode(&[VERSION, 0, 2, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    #[test]
    fn frames_split_a_stream() {
        let a = encode(&Message::Ack { bytes: 1 });
        let b = encode(&sample());
        let mut stream = frame(&a);
        stream.extend(frame(&b));
        let mut r = FrameReader::new();
        r.push(&stream[..3]);
        assert_eq!(r.next_message().unwrap(), None);
        r.push(&stream[3..]);
        assert_eq!(r.next_message().unwrap(), Some(a));
        assert_eq!(r.next_message().unwrap(), Some(b));
        assert_eq!(r.next_message().unwrap(), None);
        let mut bad = FrameReader::new();
        bad.push(&u32::MAX.to_le_bytes());
        assert!(bad.next_message().is_err());
    }
}
