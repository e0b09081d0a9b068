//! Property 3: the checker catches a broken rule. A planner that lets a node sell
//! whatever its view of the pool's on-hand count allows runs through the same
//! strict-state check as the replica simulation, on a fixed counter-example and
//! under random search; the real rule passes both.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use stocksync::error::EventError;
use stocksync::escrow::{self, CounterKey, Holds, Plan, PoolState, StockBook};
use stocksync::model::{EventId, EventKind, EventRequest, NodeId, Policy, Quantity};

use crate::invariants::check_strict_state;
use crate::workload::{node_id, pool};

type Planner = fn(&StockBook, &Holds, &NodeId, &EventRequest) -> Result<Plan, EventError>;

/// A broken rule: a node may sell whatever its view of the pool's on-hand count
/// allows, ignoring whose rights the units are.
fn bad_plan(
    book: &StockBook,
    holds: &Holds,
    me: &NodeId,
    req: &EventRequest,
) -> Result<Plan, EventError> {
    if matches!(req.kind, EventKind::Sale) {
        let on_hand = book.pool(&req.pool).map(PoolState::on_hand).unwrap_or(0);
        let q = req.qty.as_i64();
        if q > on_hand {
            return Err(EventError::InsufficientRights {
                pool: req.pool.clone(),
                available: on_hand.max(0),
                requested: req.qty.get(),
            });
        }
        let key = CounterKey::Consumed(req.pool.clone());
        let v = book.counter(me, &key) + q;
        return Ok(Plan {
            writes: vec![(key, v)],
            deficit_created: 0,
            hold: None,
        });
    }
    escrow::plan(book, holds, me, req)
}

/// A step of the book-level simulation (one pool).
#[derive(Clone, Debug)]
enum BookOp {
    Receipt { node: usize, qty: u64 },
    Sale { node: usize, qty: u64 },
    Grant { node: usize, to: usize, qty: u64 },
    Sync { to: usize, from: usize },
}

fn book_op_strategy() -> impl Strategy<Value = BookOp> {
    prop_oneof![
        (0..3usize, 1u64..=8).prop_map(|(node, qty)| BookOp::Receipt { node, qty }),
        (0..3usize, 1u64..=8).prop_map(|(node, qty)| BookOp::Sale { node, qty }),
        (0..3usize, 0..3usize, 1u64..=4).prop_map(|(node, to, qty)| BookOp::Grant {
            node,
            to,
            qty
        }),
        (0..3usize, 0..3usize).prop_map(|(to, from)| BookOp::Sync { to, from }),
    ]
}

/// Runs `ops` on three nodes, each with its own view, using `planner`; checks
/// the strict invariant on the true state after every step with the same
/// checker as the replica simulation.
fn run_books(planner: Planner, ops: &[BookOp]) -> Result<(), String> {
    let ids: Vec<NodeId> = (0..3).map(node_id).collect();
    let mut books: Vec<StockBook> = (0..3).map(|_| StockBook::new()).collect();
    let mut holds: Vec<Holds> = (0..3).map(|_| Holds::new()).collect();
    let p = pool(0);
    for (step, op) in ops.iter().enumerate() {
        let id = EventId::new(format!("b{step}")).unwrap();
        let mk = |kind: EventKind, qty: u64| {
            let mut r = EventRequest::new(
                id.clone(),
                p.location.clone(),
                p.sku.clone(),
                Quantity::new(qty).unwrap(),
                kind,
            );
            r.policy = Some(Policy::Strict);
            r
        };
        let (node, req) = match op {
            BookOp::Receipt { node, qty } => (*node, mk(EventKind::Receipt, *qty)),
            BookOp::Sale { node, qty } => (*node, mk(EventKind::Sale, *qty)),
            BookOp::Grant { node, to, qty } => (*node, mk(EventKind::Grant { to: ids[*to] }, *qty)),
            BookOp::Sync { to, from } => {
                let w = ids[*from];
                let copy: Vec<(CounterKey, i64)> = books[*from]
                    .counters_of(&w)
                    .map(|(k, v)| (k.clone(), v))
                    .collect();
                for (k, v) in copy {
                    books[*to].raise(w, &k, v).unwrap();
                }
                continue;
            }
        };
        if let Ok(plan) = planner(&books[node], &holds[node], &ids[node], &req) {
            escrow::apply(&mut books[node], &mut holds[node], &ids[node], &plan).unwrap();
        }
        let mut truth = StockBook::new();
        for (i, b) in books.iter().enumerate() {
            for (k, v) in b.counters_of(&ids[i]) {
                truth.raise(ids[i], k, v).unwrap();
            }
        }
        check_strict_state(&truth).map_err(|e| format!("after step {step} ({op:?}): {e}"))?;
    }
    Ok(())
}

/// The counter-example: A receives 5, B learns of it, both sell 5.
fn counter_example() -> Vec<BookOp> {
    vec![
        BookOp::Receipt { node: 0, qty: 5 },
        BookOp::Sync { to: 1, from: 0 },
        BookOp::Sale { node: 0, qty: 5 },
        BookOp::Sale { node: 1, qty: 5 },
    ]
}

#[test]
fn broken_rule_is_caught_on_a_fixed_counter_example() {
    // The real rule refuses B's sale (B holds no rights) and passes.
    run_books(escrow::plan, &counter_example()).unwrap();
    // The broken rule lets both sell and the checker reports on_hand -5.
    let err = run_books(bad_plan, &counter_example()).unwrap_err();
    assert!(err.contains("on_hand -5"), "{err}");
}

#[test]
fn broken_rule_is_caught_by_random_search() {
    let config = Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    };
    let strategy = vec(book_op_strategy(), 1..30);
    // The real rule passes the same search.
    let mut good = TestRunner::new_with_rng(
        config.clone(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    good.run(&strategy, |ops| {
        run_books(escrow::plan, &ops).map_err(TestCaseError::fail)
    })
    .unwrap();
    // The broken rule is caught, and the shrunk case still fails.
    let mut bad =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    match bad.run(&strategy, |ops| {
        run_books(bad_plan, &ops).map_err(TestCaseError::fail)
    }) {
        Err(TestError::Fail(_, minimal)) => {
            assert!(run_books(bad_plan, &minimal).is_err());
            assert!(minimal.len() <= 6, "shrunk to {minimal:?}");
        }
        other => panic!("the broken rule was not caught: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The real planner passes the book-level checker under random workloads.
    #[test]
    fn real_rule_passes_the_book_level_checker(ops in vec(book_op_strategy(), 1..40)) {
        run_books(escrow::plan, &ops).map_err(TestCaseError::fail)?;
    }
}
