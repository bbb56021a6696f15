// jemalloc: glibc's per-thread arenas doubled a Delta run's peak memory
// (the workspace Cargo.toml says by how much).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    sluice_cli::main()
}
