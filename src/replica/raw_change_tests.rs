//! Tests of the raw change inspection (`raw_change.rs`).
use super::*;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ScalarValue, ROOT};

fn change(actor: [u8; 32], puts: usize, message: &str) -> Vec<u8> {
    let mut doc = Automerge::new().with_actor(ActorId::from(actor));
    let mut tx = doc.transaction();
    for i in 0..puts {
        tx.put(ROOT, format!("c|S1|K{i}"), ScalarValue::counter(i as i64))
            .unwrap();
    }
    tx.commit_with(CommitOptions::default().with_message(message));
    doc.get_last_local_change().unwrap().raw_bytes().to_vec()
}

#[test]
fn agrees_with_automerge_on_honest_changes() {
    for puts in [1, 5, 300] {
        let bytes = change([3; 32], puts, r#"{"epoch":1}"#);
        let raw = inspect(&bytes).unwrap();
        let c = automerge::Change::try_from(&bytes[..]).unwrap();
        assert_eq!(raw.hash, c.hash().0);
        assert_eq!(raw.seq, c.seq());
        assert_eq!(raw.actor.to_vec(), c.actor_id().to_bytes());
        assert_eq!(raw.dep, None);
        assert!(raw.max_rows >= puts as u64 && raw.max_rows <= bytes.len() as u64);
    }
}

#[test]
fn every_truncation_and_bit_flip_is_refused_or_consistent() {
    let bytes = change([4; 32], 20, "m");
    for cut in 0..bytes.len() {
        assert!(inspect(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        // The checksum covers every byte after it; the magic and checksum are checked.
        assert!(inspect(&b).is_err(), "flipped byte {i} accepted");
    }
}

/// The minimal LEB128 encoding of `n`.
fn leb(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// Builds a chunk around `body` with a correct checksum.
fn chunk(chunk_type: u8, body: &[u8]) -> Vec<u8> {
    let len = leb(body.len() as u64);
    let hash: [u8; 32] = Sha256::new()
        .chain_update([chunk_type])
        .chain_update(&len)
        .chain_update(body)
        .finalize()
        .into();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&hash[..4]);
    out.push(chunk_type);
    out.extend_from_slice(&len);
    out.extend_from_slice(body);
    out
}

/// A change body with the given columns `(spec, data)`.
fn body(columns: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0u8, 32];
    b.extend_from_slice(&[5; 32]);
    b.extend_from_slice(&[1, 1, 0, 0, 0]); // seq, start_op, time, message, others
    b.push(columns.len() as u8);
    for (spec, data) in columns {
        b.push(*spec as u8);
        b.push(data.len() as u8);
    }
    for (_, data) in columns {
        b.extend_from_slice(data);
    }
    b
}

#[test]
fn a_run_declaring_millions_of_rows_is_refused_in_constant_time() {
    // Action column (id 4, integer RLE): one run of 2^26 copies of value 1.
    let run = vec![0x80, 0x80, 0x80, 0x20, 1];
    let bytes = chunk(1, &body(&[(0x42, run)]));
    assert!(matches!(
        inspect(&bytes),
        Err(RawChangeError::TooManyRows { .. })
    ));
    // A null run of 2^62.
    let nulls = vec![0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40];
    let bytes = chunk(1, &body(&[(0x42, nulls)]));
    assert!(matches!(
        inspect(&bytes),
        Err(RawChangeError::TooManyRows { .. })
    ));
    // Boolean run lengths.
    let bools = vec![0xff, 0xff, 0x03];
    let bytes = chunk(1, &body(&[(0x34, bools)]));
    assert!(matches!(
        inspect(&bytes),
        Err(RawChangeError::TooManyRows { .. })
    ));
}

#[test]
fn compressed_chunks_and_columns_are_refused() {
    assert_eq!(
        inspect(&chunk(2, &[0u8; 40])),
        Err(RawChangeError::ChunkType(2))
    );
    let bytes = chunk(1, &body(&[(0x42 | 0x08, vec![1, 1])]));
    assert!(matches!(
        inspect(&bytes),
        Err(RawChangeError::DeflatedColumn(_))
    ));
}

#[test]
fn declared_lengths_past_the_data_are_refused() {
    let mut b = body(&[(0x42, vec![1, 1])]);
    let at = b.len() - 3; // the column's length byte
    b[at] = 200;
    assert!(inspect(&chunk(1, &b)).is_err());
    let mut b = body(&[]);
    let at = b.len() - 1; // number of columns
    b[at] = 0x7f;
    assert_eq!(inspect(&chunk(1, &b)), Err(RawChangeError::ColumnOverrun));
}

#[test]
fn a_truncated_integer_reports_where_the_bytes_end() {
    let bytes = [0x01, 0x80, 0x80];
    assert_eq!(
        Reader {
            bytes: &bytes,
            at: 1
        }
        .uleb(),
        Err(RawChangeError::Truncated(3))
    );
    assert_eq!(
        Reader {
            bytes: &bytes,
            at: 1
        }
        .sleb(),
        Err(RawChangeError::Truncated(3))
    );
}

#[test]
fn a_ten_byte_integer_carries_one_bit_in_its_last_byte() {
    let ten = |first: u8, last: u8| {
        let mut b = vec![first; 9];
        b.push(last);
        b
    };
    let uleb = |b: &[u8]| Reader { bytes: b, at: 0 }.uleb();
    let sleb = |b: &[u8]| Reader { bytes: b, at: 0 }.sleb();
    assert_eq!(uleb(&ten(0xff, 0x01)), Ok(u64::MAX));
    assert_eq!(uleb(&ten(0x80, 0x00)), Ok(0));
    // A second bit in the tenth byte would be past 64 bits.
    assert_eq!(uleb(&ten(0xff, 0x02)), Err(RawChangeError::Integer(0)));
    // A tenth byte is not sign-extended: its one bit is the sign bit.
    assert_eq!(sleb(&ten(0xff, 0x7f)), Ok(-1));
    assert_eq!(sleb(&ten(0x80, 0x7f)), Ok(i64::MIN));
    assert_eq!(sleb(&ten(0x80, 0x00)), Ok(0));
}

#[test]
fn a_padded_length_is_refused_whatever_the_checksum() {
    let honest = change([6; 32], 3, "m");
    let mut r = Reader {
        bytes: &honest,
        at: 9,
    };
    let declared = r.uleb().unwrap();
    // The same length in one byte more than it needs.
    let mut len = leb(declared);
    *len.last_mut().unwrap() |= 0x80;
    len.push(0);
    let mut padded = honest[..9].to_vec();
    padded.extend_from_slice(&len);
    padded.extend_from_slice(&honest[r.at..]);
    // The checksum matches the minimal encoding's hash; the padding is refused.
    assert_eq!(inspect(&padded), Err(RawChangeError::Checksum));
    // Neither matches: still refused.
    padded[4] ^= 0x01;
    assert_eq!(inspect(&padded), Err(RawChangeError::Checksum));
}

#[test]
fn the_column_count_is_bounded_by_two_bytes_a_column() {
    // One empty column whose metadata (two bytes) exactly fills the rest.
    let bytes = chunk(1, &body(&[(0x42, vec![])]));
    assert_eq!(inspect(&bytes).map(|c| c.max_rows), Ok(0));
    // One column declared and one byte left: refused before it is read.
    let mut b = body(&[]);
    *b.last_mut().unwrap() = 1;
    b.push(0x42);
    assert_eq!(inspect(&chunk(1, &b)), Err(RawChangeError::ColumnOverrun));
}

#[test]
fn a_column_one_byte_past_the_data_is_refused_before_any_is_read() {
    let mut b = body(&[(0x42, vec![1, 1])]);
    let at = b.len() - 3; // the column's length byte: 2
    b[at] = 3;
    assert_eq!(inspect(&chunk(1, &b)), Err(RawChangeError::ColumnOverrun));
}

#[test]
fn delta_and_string_columns_declaring_millions_of_rows_are_refused() {
    // A run of 2^26 copies of one value, in a delta column (type 3)...
    let delta = vec![0x80, 0x80, 0x80, 0x20, 1];
    let bytes = chunk(1, &body(&[(0x13, delta)]));
    assert!(matches!(
        inspect(&bytes),
        Err(RawChangeError::TooManyRows { spec: 0x13, .. })
    ));
    // ... and in a string column (type 5).
    let text = vec![0x80, 0x80, 0x80, 0x20, 1, b'a'];
    let bytes = chunk(1, &body(&[(0x15, text)]));
    assert!(matches!(
        inspect(&bytes),
        Err(RawChangeError::TooManyRows { spec: 0x15, .. })
    ));
}
