//! The compactor Lambda function. Settings come from the environment once
//! (`SLUICE_CONFIG`, `SLUICE_COMPACT_*` and friends, see functions/README.md),
//! the engine and clients are built once, and every event goes to
//! [`sluice_functions::compactor::handle`] with the invocation's deadline, so
//! that long work stops in time and says where to go on.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use sluice_functions::{Deps, Settings, logging};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    logging::init();
    let settings = Settings::from_env()?;
    let deps = Deps::new(&settings)
        .await
        .map_err(|e| anyhow::anyhow!("compactor: cannot start: {e}"))?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = deadline(event.context.deadline);
        sluice_functions::compactor::handle(deps, event.payload, deadline).await
    }))
    .await
}

/// The invocation's deadline (milliseconds since the epoch) as an `Instant`;
/// none if it is not in the future (local emulators do not always set it).
fn deadline(deadline_ms: u64) -> Option<Instant> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    (deadline_ms > now_ms).then(|| Instant::now() + Duration::from_millis(deadline_ms - now_ms))
}
