//! The compactor Lambda function: settings from the environment once
//! (`SLUICE_CONFIG`, `SLUICE_COMPACT_*` and friends, see functions/README.md),
//! the clients and its parts ([`sluice_functions::Compactor`]: the catalog) built once ([`sluice_functions::serve`]), and every
//! event handed to [`sluice_functions::compactor::handle`] with the
//! invocation's deadline, so that long work stops in time and says where to go on.

// Since `serve` became generic over the function's parts, a release build
// overflows the default depth of the compiler's query for the layout of
// `main`'s future (boxing the start-up future did not avoid it).
#![recursion_limit = "256"]

// jemalloc, as in the sluice command: the transform ran a 128 MB chunk 4-17%
// faster than with glibc's malloc (bench/README.md, "Cold start, first event
// and memory of each function").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sluice_functions::serve(
        "compactor",
        sluice_functions::Compactor,
        sluice_functions::compactor::handle,
    )
    .await
}
