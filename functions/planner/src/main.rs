//! The planner Lambda function: settings from the environment once
//! (`SLUICE_CONFIG` and friends, see functions/README.md), the engine and
//! clients built once ([`sluice_functions::serve`]), and every event handed to
//! [`sluice_functions::planner::handle`].

// jemalloc, as in the sluice command: the transform ran a 128 MB chunk 4-17%
// faster than with glibc's malloc (bench/README.md, "Cold start, first event
// and memory of each function").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sluice_functions::serve(
        "planner",
        sluice_functions::Planner,
        |deps, event, _deadline| sluice_functions::planner::handle(deps, event),
    )
    .await
}
