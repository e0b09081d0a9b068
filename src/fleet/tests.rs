//! Unit tests of the roster: signatures and every permission rule.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use super::signed::signed_message;
use super::*;
use crate::escrow::{CounterKey, TransferLeg};
use crate::identity::Identity;
use crate::model::{LocationId, NodeId, PoolKey, Position, Role, Sku, TransferId};

fn loc(s: &str) -> LocationId {
    LocationId::new(s).unwrap()
}

fn pool(l: &str) -> PoolKey {
    PoolKey::new(loc(l), Sku::new("A").unwrap())
}

fn leg(from: &str, to: &str) -> TransferLeg {
    TransferLeg {
        transfer: TransferId::new("T1").unwrap(),
        from: loc(from),
        to: loc(to),
        sku: Sku::new("A").unwrap(),
    }
}

const STORE: NodeId = NodeId([1; 32]);
const TILL: NodeId = NodeId([2; 32]);
const HUB: NodeId = NodeId([3; 32]);
const CHANNEL: NodeId = NodeId([4; 32]);
const OUTSIDER: NodeId = NodeId([9; 32]);

fn authority() -> FleetAuthority {
    FleetAuthority::from_seed([42; 32])
}

/// Store and till at S1, hub at HQ and S1, channel at S1.
fn roster() -> Roster {
    authority()
        .roster()
        .with_member(STORE, Member::new("store", Role::Store, [loc("S1")]))
        .with_member(TILL, Member::new("till", Role::Till, [loc("S1")]))
        .with_member(HUB, Member::new("hub", Role::Hub, [loc("HQ"), loc("S1")]))
        .with_member(CHANNEL, Member::new("web", Role::Channel, [loc("S1")]))
}

#[test]
fn a_signed_roster_round_trips_and_each_edit_raises_the_version() {
    let mut r = roster();
    assert_eq!(r.version, 4);
    r.revoke(&TILL, Position { epoch: 1, seq: 3 }, "stolen")
        .unwrap();
    assert_eq!(r.version, 5);
    assert_eq!(
        r.revoke(&OUTSIDER, Position::default(), "x"),
        Err(RosterError::NotMember)
    );
    let signed = authority().sign(&r).unwrap();
    let v = signed.verify(&authority().fleet()).unwrap();
    assert_eq!(v.roster(), &r);
    assert_eq!(v.signed(), &signed);
    // The wire form (postcard) round-trips too.
    let bytes = postcard::to_allocvec(&signed).unwrap();
    let back: SignedRoster = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back.verify(&authority().fleet()).unwrap().roster(), &r);
}

#[test]
fn a_tampered_body_or_another_authority_is_refused() {
    let fleet = authority().fleet();
    let mut signed = authority().sign(&roster()).unwrap();
    let last = signed.body.len() - 1;
    signed.body[last] ^= 1;
    assert_eq!(
        signed.verify(&fleet).unwrap_err(),
        SignedRosterError::BadSignature
    );
    // Another authority's roster, whatever fleet it names.
    let other = FleetAuthority::from_seed([7; 32]);
    let theirs = other
        .sign(
            &other
                .roster()
                .with_member(STORE, Member::new("s", Role::Store, [loc("S1")])),
        )
        .unwrap();
    assert_eq!(
        theirs.verify(&fleet).unwrap_err(),
        SignedRosterError::BadSignature
    );
    let mut forged = roster();
    forged.fleet = other.fleet();
    assert!(matches!(
        authority().sign(&forged),
        Err(SignedRosterError::WrongFleet { .. })
    ));
    let short = SignedRoster {
        body: authority().sign(&roster()).unwrap().body,
        signature: vec![0; 63],
    };
    assert_eq!(
        short.verify(&fleet).unwrap_err(),
        SignedRosterError::BadSignature
    );
}

#[test]
fn a_body_naming_another_fleet_or_not_a_roster_is_refused_after_the_signature() {
    let key = Identity::from_seed([42; 32]);
    let fleet = authority().fleet();
    let sign = |body: Vec<u8>| SignedRoster {
        signature: key.sign(&signed_message(&body)).to_vec(),
        body,
    };
    let mut other = roster();
    other.fleet = FleetId([5; 32]);
    let named = sign(postcard::to_allocvec(&other).unwrap());
    assert!(matches!(
        named.verify(&fleet),
        Err(SignedRosterError::WrongFleet { .. })
    ));
    let garbage = sign(vec![0xff; 40]);
    assert!(matches!(
        garbage.verify(&fleet),
        Err(SignedRosterError::Malformed(_))
    ));
}

#[test]
fn a_weak_key_that_plain_verification_accepts_is_refused() {
    // The identity point as the fleet key, and a signature with R = identity and
    // s = 0: [s]B = R + [k]A holds for every message, so plain `verify` accepts it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let fleet = FleetId(identity);
    let mut r = roster();
    r.fleet = fleet;
    let body = postcard::to_allocvec(&r).unwrap();
    let mut sig = [0u8; 64];
    sig[0] = 1;
    let key = VerifyingKey::from_bytes(&identity).unwrap();
    assert!(key
        .verify(&signed_message(&body), &Signature::from_bytes(&sig))
        .is_ok());
    let signed = SignedRoster {
        body,
        signature: sig.to_vec(),
    };
    assert_eq!(
        signed.verify(&fleet).unwrap_err(),
        SignedRosterError::WeakKey
    );
}

#[test]
fn an_oversized_roster_is_refused_before_its_signature_is_checked() {
    let signed = SignedRoster {
        body: vec![0; MAX_ROSTER_BYTES + 1],
        signature: vec![0; 64],
    };
    assert!(matches!(
        signed.verify(&authority().fleet()),
        Err(SignedRosterError::TooLarge { .. })
    ));
}

#[test]
fn a_fleet_state_installs_only_newer_rosters_of_its_own_fleet() {
    let a = authority();
    let mut state = FleetState::new(a.fleet(), None).unwrap();
    assert_eq!(state.version(), 0);
    assert_eq!(
        state
            .roster()
            .check_write(&STORE, &CounterKey::Minted(pool("S1"))),
        Err(RosterError::NotMember)
    );
    let v4 = a.sign(&roster()).unwrap();
    state.install(state.check(&v4).unwrap()).unwrap();
    assert_eq!(state.version(), 4);
    assert_eq!(
        state.check(&v4).unwrap_err(),
        InstallError::NotNewer {
            held: 4,
            offered: 4
        }
    );
    let other = FleetAuthority::from_seed([7; 32]);
    let mut theirs = other.roster();
    theirs.version = 99;
    let theirs = other.sign(&theirs).unwrap();
    assert!(matches!(
        state.check(&theirs),
        Err(InstallError::Invalid(SignedRosterError::BadSignature))
    ));
    // A stored roster is verified on load.
    assert!(FleetState::new(a.fleet(), Some(&theirs)).is_err());
    assert_eq!(FleetState::new(a.fleet(), Some(&v4)).unwrap().version(), 4);
}

#[test]
fn members_write_only_at_their_locations_and_outsiders_not_at_all() {
    let r = roster();
    for key in [
        CounterKey::Minted(pool("S1")),
        CounterKey::Consumed(pool("S1")),
        CounterKey::Reserved(pool("S1")),
        CounterKey::Released(pool("S1")),
        CounterKey::Shipped(leg("S1", "S2")),
        CounterKey::Received(leg("S2", "S1")),
        CounterKey::Granted(pool("S1"), TILL),
    ] {
        assert_eq!(r.check_write(&STORE, &key), Ok(()), "{key}");
        assert_eq!(
            r.check_write(&OUTSIDER, &key),
            Err(RosterError::NotMember),
            "{key}"
        );
    }
    let outside = RosterError::OutsideLocations {
        location: loc("S2"),
    };
    for key in [
        CounterKey::Minted(pool("S2")),
        CounterKey::Consumed(pool("S2")),
        CounterKey::Reserved(pool("S2")),
        CounterKey::Released(pool("S2")),
        CounterKey::Granted(pool("S2"), HUB),
        // The shipping end must be the author's, and the receiving end.
        CounterKey::Shipped(leg("S2", "S1")),
        CounterKey::Received(leg("S1", "S2")),
    ] {
        assert_eq!(r.check_write(&STORE, &key), Err(outside.clone()), "{key}");
    }
}

#[test]
fn a_channel_may_not_mint_but_may_consume_and_the_others_may_mint() {
    let r = roster();
    let no = RosterError::RoleMayNotMint {
        role: Role::Channel,
    };
    assert_eq!(
        r.check_write(&CHANNEL, &CounterKey::Minted(pool("S1"))),
        Err(no.clone())
    );
    assert_eq!(
        r.check_write(&CHANNEL, &CounterKey::Received(leg("S2", "S1"))),
        Err(no)
    );
    for key in [
        CounterKey::Consumed(pool("S1")),
        CounterKey::Reserved(pool("S1")),
        CounterKey::Released(pool("S1")),
        CounterKey::Granted(pool("S1"), STORE),
    ] {
        assert_eq!(r.check_write(&CHANNEL, &key), Ok(()), "{key}");
    }
    for m in [STORE, TILL, HUB] {
        assert_eq!(r.check_write(&m, &CounterKey::Minted(pool("S1"))), Ok(()));
    }
    assert_eq!(r.check_write(&HUB, &CounterKey::Minted(pool("HQ"))), Ok(()));
}

#[test]
fn a_grant_goes_only_to_a_current_member_at_the_pools_location() {
    let mut r = roster();
    let at_s1 = |to| CounterKey::Granted(pool("S1"), to);
    assert_eq!(r.check_write(&STORE, &at_s1(TILL)), Ok(()));
    assert_eq!(
        r.check_write(&STORE, &at_s1(OUTSIDER)),
        Err(RosterError::GrantToNonMember { to: OUTSIDER })
    );
    assert_eq!(
        r.check_write(&HUB, &CounterKey::Granted(pool("HQ"), STORE)),
        Err(RosterError::GrantOutsideLocations {
            to: STORE,
            location: loc("HQ")
        })
    );
    r.revoke(&TILL, Position { epoch: 1, seq: 5 }, "lost")
        .unwrap();
    // Own events: no grant to a revoked member.
    assert_eq!(
        r.check_write(&STORE, &at_s1(TILL)),
        Err(RosterError::GrantToNonMember { to: TILL })
    );
    // Received changes: a grant to a listed but revoked member is accepted
    // (its time against the revocation cannot be told; the rights are stranded).
    let at = Position { epoch: 1, seq: 1 };
    assert_eq!(r.check_received(&STORE, at, &at_s1(TILL)), Ok(()));
    assert_eq!(
        r.check_received(&STORE, at, &at_s1(OUTSIDER)),
        Err(RosterError::GrantToNonMember { to: OUTSIDER })
    );
}

#[test]
fn a_revoked_member_keeps_its_changes_up_to_the_point_and_no_later() {
    let mut r = roster();
    let after = Position { epoch: 2, seq: 5 };
    r.revoke(&TILL, after, "stolen").unwrap();
    let key = CounterKey::Consumed(pool("S1"));
    for ok in [
        Position { epoch: 1, seq: 99 },
        Position { epoch: 2, seq: 5 },
    ] {
        assert_eq!(r.check_received(&TILL, ok, &key), Ok(()), "{ok:?}");
    }
    let revoked = RosterError::Revoked {
        after,
        reason: "stolen".into(),
    };
    for late in [Position { epoch: 2, seq: 6 }, Position { epoch: 3, seq: 1 }] {
        assert_eq!(
            r.check_received(&TILL, late, &key),
            Err(revoked.clone()),
            "{late:?}"
        );
    }
    // A revoked member builds no new change at all.
    assert_eq!(r.check_write(&TILL, &key), Err(revoked));
    // Still listed: a revocation is not a removal.
    assert!(r.member(&TILL).is_some());
}

/// The roster as encoded before retirement existed.
#[derive(serde::Serialize, serde::Deserialize)]
struct OldRoster {
    fleet: FleetId,
    version: u64,
    members: std::collections::BTreeMap<NodeId, Member>,
}

#[test]
fn heirs_are_encoded_last_so_older_rosters_and_older_readers_both_work() {
    let mut r = roster();
    r.revoke(&CHANNEL, Position::default(), "gone").unwrap();
    let old = OldRoster {
        fleet: r.fleet,
        version: r.version,
        members: r.members.clone(),
    };
    // An older body decodes, with no heirs.
    let body = postcard::to_allocvec(&old).unwrap();
    assert_eq!(Roster::decode(&body).unwrap(), r);
    // A newer body with an heir: an older reader sees the members and revocation.
    r.retire(&TILL, Position { epoch: 1, seq: 2 }, "stolen", STORE)
        .unwrap();
    assert_eq!(r.heir_of(&TILL), Some(STORE));
    let body = postcard::to_allocvec(&r).unwrap();
    let seen: OldRoster = postcard::from_bytes(&body).unwrap();
    assert_eq!(seen.members, r.members);
    assert_eq!(Roster::decode(&body).unwrap(), r);
    // Revoking again (without an heir) drops the heir.
    r.revoke(&TILL, Position { epoch: 1, seq: 2 }, "stolen")
        .unwrap();
    assert_eq!(r.heir_of(&TILL), None);
}
