//! The `sluice` command, for the end-to-end tests.

fn main() {
    sluice_cli::main()
}
