//! Seeded fleet simulations with faults: no oversell, no lost acknowledged
//! event, convergence after heal. A failure prints its seed and a replay command.
//!
//! `STOCKSYNC_SIM_SEEDS` sets how many seeds run (default 1000; the long mode
//! runs 10,000 or more), `STOCKSYNC_SIM_FIRST` the first seed.

use stocksync::sim::{run, SimConfig};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn seeded_fleets_never_oversell_lose_nothing_and_converge() {
    let seeds = env("STOCKSYNC_SIM_SEEDS", 1000);
    let first = env("STOCKSYNC_SIM_FIRST", 1);
    assert!(SimConfig::standard(first).nodes() >= 20);
    // Two workers (the CI machine has two cores), seeds interleaved.
    let results: Vec<_> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u64)
            .map(|w| {
                s.spawn(move || {
                    (first + w..first + seeds)
                        .step_by(2)
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
    let (mut acked, mut worst_converge, mut crashes) = (0, 0, 0);
    for r in results {
        match r {
            Ok(r) => {
                acked += r.acked;
                crashes += r.crashes;
                worst_converge = worst_converge.max(r.converge_ms);
            }
            Err(f) => failures.push(f.to_string()),
        }
    }
    eprintln!(
        "{seeds} seeds x 20 nodes: {acked} acknowledged events, {crashes} crashes, slowest convergence {worst_converge} ms after heal, {} failures",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        acked > seeds as usize * 50,
        "the workload did too little: {acked}"
    );
}

#[test]
fn the_checker_catches_a_broken_rule() {
    // Tills that sell against the pool's on-hand count instead of their rights
    // must be caught as an oversell on some seed.
    let caught = (1..=200).find_map(|seed| {
        let config = SimConfig {
            broken_rule: true,
            ..SimConfig::standard(seed)
        };
        run(&config).err()
    });
    let failure = caught.expect("a broken rule went unnoticed on 200 seeds");
    let text = failure.to_string();
    eprintln!("caught: {text}");
    assert!(
        text.contains("oversell") || text.contains("rights"),
        "{text}"
    );
    assert!(text.contains("--seed") && text.contains("--broken-rule"));
}

#[test]
fn a_seed_replays_identically() {
    let a = run(&SimConfig::standard(42)).unwrap();
    let b = run(&SimConfig::standard(42)).unwrap();
    assert_eq!(
        (a.acked, a.refused, a.converge_ms, a.bytes),
        (b.acked, b.refused, b.converge_ms, b.bytes)
    );
}
