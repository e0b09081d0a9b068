//! The token's text form and the hub's checks, one refusal at a time.

use super::*;

fn token() -> Token {
    Token {
        fleet: FleetId([7; 32]),
        hub: NodeId([8; 32]),
        secret: [9; 32],
    }
}

fn who(name: &str) -> Applicant {
    Applicant {
        name: name.into(),
        location: "S2".into(),
        role: "till".into(),
    }
}

fn record(t: &Token) -> TokenRecord {
    TokenRecord {
        hash: t.hash(),
        who: who("till-9"),
        expires_at: 1_000,
        used_by: None,
        revoked: false,
    }
}

#[test]
fn a_token_round_trips_and_junk_is_refused() {
    let t = token();
    let text = t.to_string();
    assert!(text.starts_with("ssenrol1."), "{text}");
    assert_eq!(text.parse::<Token>().unwrap(), t);
    assert!(!format!("{t:?}").contains(&URL_SAFE_NO_PAD.encode(t.secret)));
    for bad in [
        "",
        "ssenrol1",
        "ssenrol2.a.b.c",
        &text.replace("ssenrol1.", "ssenrol1.x"),
        &format!("{text}.extra"),
        &text[..text.len() - 1],
        &format!("{text}A"),
    ] {
        assert!(bad.parse::<Token>().is_err(), "{bad:?}");
    }
}

#[test]
fn a_proper_request_is_admitted_once_then_again_only_for_its_key() {
    let t = token();
    let me = Identity::from_seed([1; 32]);
    let req = EnrolRequest::new(&me, who("till-9"), &t);
    let mut rec = record(&t);
    assert_eq!(admit(&req, &t.fleet, Some(&rec), 999), Ok(Admission::Claim));
    rec.used_by = Some(me.node_id());
    assert_eq!(admit(&req, &t.fleet, Some(&rec), 999), Ok(Admission::Again));
    let other = EnrolRequest::new(&Identity::from_seed([2; 32]), who("till-9"), &t);
    let code = |r: Result<Admission, Refused>| r.unwrap_err().code;
    assert_eq!(
        code(admit(&other, &t.fleet, Some(&rec), 999)),
        RefusalCode::TokenUsed
    );
    // The wire form round-trips.
    assert_eq!(EnrolRequest::decode(&req.encode()).unwrap(), req);
    assert_eq!(
        code(EnrolRequest::decode(&[0xff; 10]).map(|_| Admission::Claim)),
        RefusalCode::Malformed
    );
}

#[test]
fn each_token_check_refuses_and_says_why() {
    let t = token();
    let me = Identity::from_seed([1; 32]);
    let req = EnrolRequest::new(&me, who("till-9"), &t);
    let rec = record(&t);
    let code = |r: Result<Admission, Refused>| r.unwrap_err().code;
    assert_eq!(
        code(admit(&req, &t.fleet, None, 0)),
        RefusalCode::UnknownToken
    );
    let mut wrong_secret = req.clone();
    wrong_secret.secret[0] ^= 1;
    assert_eq!(
        code(admit(&wrong_secret, &t.fleet, Some(&rec), 0)),
        RefusalCode::UnknownToken
    );
    let revoked = TokenRecord {
        revoked: true,
        ..rec.clone()
    };
    assert_eq!(
        code(admit(&req, &t.fleet, Some(&revoked), 0)),
        RefusalCode::TokenRevoked
    );
    assert_eq!(
        code(admit(&req, &t.fleet, Some(&rec), 1_000)),
        RefusalCode::TokenExpired
    );
    let elsewhere = EnrolRequest::new(&me, who("till-10"), &t);
    assert_eq!(
        code(admit(&elsewhere, &t.fleet, Some(&rec), 0)),
        RefusalCode::Mismatch
    );
}

/// The hub-side check of the proof of possession: a request whose signature
/// is not by the key it enrols, or not over this fleet, token and entry, is
/// refused.
#[test]
fn a_bad_proof_of_possession_is_refused() {
    let t = token();
    let me = Identity::from_seed([1; 32]);
    let rec = record(&t);
    let good = EnrolRequest::new(&me, who("till-9"), &t);
    let bad = |req: &EnrolRequest| {
        assert_eq!(
            admit(req, &t.fleet, Some(&rec), 0).unwrap_err().code,
            RefusalCode::BadProof,
            "{req:?}"
        )
    };
    // Someone else's key claimed, signed by me: I do not hold that key.
    let mut stolen = good.clone();
    stolen.node = Identity::from_seed([3; 32]).node_id();
    bad(&stolen);
    // Signed over another fleet.
    let mut foreign = t.clone();
    foreign.fleet = FleetId([6; 32]);
    let mut other_fleet = EnrolRequest::new(&me, who("till-9"), &foreign);
    other_fleet.secret = t.secret;
    bad(&other_fleet);
    // Signed over another token.
    let mut other_token = t.clone();
    other_token.secret = [5; 32];
    let mut replayed = EnrolRequest::new(&me, who("till-9"), &other_token);
    replayed.secret = t.secret;
    bad(&replayed);
    // A flipped bit, a short or an empty signature.
    let mut flipped = good.clone();
    flipped.proof[10] ^= 1;
    bad(&flipped);
    let mut short = good.clone();
    short.proof.truncate(63);
    bad(&short);
    bad(&EnrolRequest {
        proof: Vec::new(),
        ..good.clone()
    });
    assert_eq!(admit(&good, &t.fleet, Some(&rec), 0), Ok(Admission::Claim));
}

#[test]
fn the_proof_message_is_domain_separated_and_binds_each_field() {
    let t = token();
    let n = NodeId([1; 32]);
    let m = pop_message(&t.fleet, &t.hash(), &n, &who("till-9"));
    assert!(m.starts_with(b"stocksync-enrol-pop-v1\0"));
    // Moving a byte from one field to the next changes the message.
    let a = Applicant {
        name: "ab".into(),
        location: "c".into(),
        role: "till".into(),
    };
    let b = Applicant {
        name: "a".into(),
        location: "bc".into(),
        role: "till".into(),
    };
    assert_ne!(
        pop_message(&t.fleet, &t.hash(), &n, &a),
        pop_message(&t.fleet, &t.hash(), &n, &b)
    );
    assert_ne!(t.hash(), t.secret, "the hub stores a hash, not the secret");
}
