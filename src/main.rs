//! The `stocksync` binary: the command line (which installs the log
//! subscriber) and the node daemon it can run.

mod cli;
mod daemon;

fn main() {
    std::process::exit(cli::main());
}
