//! The compactor Lambda function: settings from the environment once
//! (`SLUICE_CONFIG`, `SLUICE_COMPACT_*` and friends, see functions/README.md),
//! the engine and clients built once ([`sluice_functions::serve`]), and every
//! event handed to [`sluice_functions::compactor::handle`] with the
//! invocation's deadline, so that long work stops in time and says where to go on.

// jemalloc, as in the sluice command: the transform ran a 128 MB chunk 4-17%
// faster than with glibc's malloc (bench/README.md, "Cold start, first event
// and memory of each function").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sluice_functions::serve(
        "compactor",
        sluice_functions::Committer,
        |deps, event, deadline| sluice_functions::compactor::handle(deps, event, deadline),
    )
    .await
}
