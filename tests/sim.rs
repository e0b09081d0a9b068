//! Seeded fleet simulations with faults: no oversell beyond the deficits
//! recorded, no lost or doubled event, convergence to the checker's own model
//! after heal; with every node running the rights exchange, no over-grant,
//! rights conserved and at rest after the heal. A failure prints its seed and
//! a replay command.
//!
//! `STOCKSYNC_SIM_SEEDS` sets how many seeds run (default 1000; the long mode
//! runs 10,000 or more), `STOCKSYNC_SIM_FIRST` the first seed.

use std::time::Instant;

use stocksync::sim::{run, RuleFlaw, SimConfig, SimReport};

/// Seeds CI runs.
const CI_SEEDS: u64 = 1000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn seeded_fleets_never_oversell_lose_nothing_and_converge() {
    let started = Instant::now();
    let seeds = env("STOCKSYNC_SIM_SEEDS", CI_SEEDS);
    let first = env("STOCKSYNC_SIM_FIRST", 1);
    assert!(SimConfig::standard(first).nodes() >= 20);
    // The CI machine has two cores; a third worker keeps them busy while the
    // SQLite seeds wait for the disk. Seeds are interleaved.
    const WORKERS: u64 = 3;
    let results: Vec<_> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                s.spawn(move || {
                    (first + w..first + seeds)
                        .step_by(WORKERS as usize)
                        .map(|seed| run(&SimConfig::standard(seed)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut failures = Vec::new();
    let mut sum = SimReport::default();
    let (mut worst_converge, mut sqlite_seeds) = (0, 0);
    let mut bytes = 0u64;
    for r in results {
        match r {
            Ok(r) => {
                let (c, f) = (&mut sum.counts, &mut sum.faults);
                c.acked += r.counts.acked;
                c.refused += r.counts.refused;
                c.failed += r.counts.failed;
                c.multi_groups += r.counts.multi_groups;
                c.repeats_replayed += r.counts.repeats_replayed;
                c.durable_unacked += r.counts.durable_unacked;
                c.deficits += r.counts.deficits;
                f.disk += r.faults.disk;
                f.crash_before += r.faults.crash_before;
                f.crash_after += r.faults.crash_after;
                sum.crashes += r.crashes;
                let (g, m) = (&mut sum.rebalance, &r.rebalance);
                g.pulls += m.pulls;
                g.orders += m.orders;
                g.own_moves += m.own_moves;
                g.units += m.units;
                g.rebalances += m.rebalances;
                g.borrows += m.borrows;
                g.borrows_ok += m.borrows_ok;
                g.quiet_grants += m.quiet_grants;
                bytes += r.bytes;
                sqlite_seeds += usize::from(r.sqlite_nodes > 0);
                worst_converge = worst_converge.max(r.converge_ms);
            }
            Err(f) => failures.push(f.to_string()),
        }
    }
    let (c, f) = (&sum.counts, &sum.faults);
    eprintln!(
        "{seeds} seeds x 20 nodes ({sqlite_seeds} with SQLite nodes): {} acknowledged events, \
         {} refused, {} failed in storage, {} groups of >1 event in one commit, {} repeated ids \
         replayed, {} durable unacknowledged, {} deficits recorded, {} node crashes, store faults \
         injected: {} disk failures, {} crashes before and {} after a commit; slowest convergence \
         {worst_converge} ms after heal; {:.1} s wall; {} failures",
        c.acked,
        c.refused,
        c.failed,
        c.multi_groups,
        c.repeats_replayed,
        c.durable_unacked,
        c.deficits,
        sum.crashes,
        f.disk,
        f.crash_before,
        f.crash_after,
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    let g = &sum.rebalance;
    eprintln!(
        "rebalancing: {} grants answering pulls, {} obeying orders, {} own moves of managers ({} units), \
         {} rebalances ordered, {} borrows of which {} sales went through on retry, {} grants after \
         the heal before rights came to rest; {} MB sent",
        g.pulls,
        g.orders,
        g.own_moves,
        g.units,
        g.rebalances,
        g.borrows,
        g.borrows_ok,
        g.quiet_grants,
        bytes >> 20
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let seeds = seeds as usize;
    assert!(
        c.acked > seeds * 50,
        "the workload did too little: {}",
        c.acked
    );
    if seeds >= 100 {
        // The run exercised what the checker is there for.
        assert!(
            c.multi_groups > seeds,
            "few multi-event groups: {}",
            c.multi_groups
        );
        assert!(c.repeats_replayed > 0 && c.deficits > 0 && c.durable_unacked > 0);
        assert!(f.disk > 0 && f.crash_before > 0 && f.crash_after > 0);
        assert!(sqlite_seeds > 0);
        // Rights moved every way the exchange moves them.
        let g = &sum.rebalance;
        assert!(g.pulls > 0 && g.orders > 0 && g.own_moves > 0, "{g:?}");
        assert!(g.borrows_ok > 0 && g.quiet_grants > 0, "{g:?}");
    }
}

#[test]
fn the_checker_catches_each_rule_flaw() {
    for flaw in RuleFlaw::ALL {
        let caught = (1..=CI_SEEDS).find_map(|seed| {
            let config = SimConfig {
                flaw: Some(flaw),
                ..SimConfig::standard(seed)
            };
            run(&config).err()
        });
        let failure = caught.unwrap_or_else(|| panic!("{flaw} went unnoticed on {CI_SEEDS} seeds"));
        let text = failure.to_string();
        eprintln!("{flaw} caught by seed {}: {text}", failure.seed);
        assert!(text.contains("oversell"), "{text}");
        assert!(text.contains(&format!("--seed {} --broken-rule {flaw}", failure.seed)));
    }
}

#[test]
fn a_seed_replays_identically() {
    // Seed 40 runs three nodes on SQLite.
    for seed in [42, 40] {
        let a = run(&SimConfig::standard(seed)).unwrap();
        let b = run(&SimConfig::standard(seed)).unwrap();
        let key = |r: &SimReport| {
            (
                r.counts.acked,
                r.counts.refused,
                r.counts.multi_groups,
                r.faults.disk + r.faults.crash_before + r.faults.crash_after,
                r.converge_ms,
                r.bytes,
                (r.rebalance.pulls, r.rebalance.orders, r.rebalance.own_moves),
                (r.rebalance.units, r.rebalance.borrows_ok),
            )
        };
        assert_eq!(key(&a), key(&b), "seed {seed}");
    }
}
