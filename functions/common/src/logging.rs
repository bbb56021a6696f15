//! JSON logs for CloudWatch: one object per line, with the Lambda request id
//! (from the runtime's `Lambda runtime invoke` span) and the object being
//! worked on (from the handlers' spans) on every line.

use tracing_subscriber::EnvFilter;

/// Install the JSON subscriber. The level comes from `RUST_LOG`, else
/// `AWS_LAMBDA_LOG_LEVEL`, else `info`; read here, at start-up, only.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok())
        .map(|l| l.to_ascii_lowercase())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::new(filter))
        .with_current_span(false)
        .with_span_list(true)
        .flatten_event(true)
        .with_target(false)
        .init();
}
