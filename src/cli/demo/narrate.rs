//! The progress display: one line per step, numbered, with the time since
//! the start; plain lines only, so it reads the same piped into a file.

use std::time::Instant;

/// Prints the day's steps.
pub struct Narrator {
    t0: Instant,
    step: usize,
    steps: usize,
}

impl Narrator {
    /// A narrator for a day of `steps` steps.
    pub fn new(steps: usize) -> Self {
        Self {
            t0: Instant::now(),
            step: 0,
            steps,
        }
    }

    /// Starts the next step: `[ 3/10  +1.2s] 12:00 title`.
    pub fn step(&mut self, clock: &str, title: &str) {
        self.step += 1;
        println!();
        println!(
            "[{:>2}/{} {:>6.1}s] {clock} {title}",
            self.step,
            self.steps,
            self.t0.elapsed().as_secs_f64()
        );
    }

    /// One thing that happened in the current step, with its figures.
    pub fn say(&self, text: impl AsRef<str>) {
        println!("    {}", text.as_ref());
    }

    /// Seconds since the start.
    pub fn elapsed_s(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }
}
