//! The stream Lambda function: settings from the environment once
//! (`SLUICE_CONFIG` and friends, see functions/README.md), the clients and
//! its parts ([`sluice_functions::Transformer`]: the catalog, the engine with
//! the tables' SQL planned) built once ([`sluice_functions::serve`]), and
//! every Kinesis or Kafka batch handed to [`sluice_functions::stream::handle_event`],
//! read from the invocation's bytes as a [`sluice_functions::stream::StreamEvent`].

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
        "stream",
        sluice_functions::Transformer,
        sluice_functions::stream::handle_event,
    )
    .await
}
