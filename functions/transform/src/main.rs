//! The transform Lambda function. Settings come from the environment once
//! (`SLUICE_CONFIG` and friends, see functions/README.md), the engine and
//! clients are built once, and every event goes to
//! [`sluice_functions::transform::handle`].

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use sluice_functions::{Deps, Settings, logging};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    logging::init();
    let settings = Settings::from_env()?;
    let deps = Deps::new(&settings)
        .await
        .map_err(|e| anyhow::anyhow!("transform: cannot start: {e}"))?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        sluice_functions::transform::handle(deps, event.payload).await
    }))
    .await
}
