//! The SQL step: the table's `sql` runs with DataFusion over a chunk's
//! batches, registered as the table `input`. Without `sql` batches pass
//! through unchanged.
//!
//! [`Transform::plan`] checks the query once at start-up, against the
//! declared schema and with no data: a bad query, or a `partition_by` column
//! that it does not produce, fails before anything is read.

use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::config::Table;
use crate::error::{Error, Result};

/// A checked transform for one table.
#[derive(Debug, Clone)]
pub struct Transform {
    table: String,
    sql: Option<String>,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
}

/// A one-shot partition stream: hands out the chunk's batch stream once.
struct OneShot {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneShot")
    }
}

impl PartitionStream for OneShot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        match self.stream.lock().expect("not poisoned").take() {
            Some(s) => s,
            None => Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async {
                    Err(datafusion::error::DataFusionError::Execution(
                        "the chunk's input was already read".into(),
                    ))
                }),
            )),
        }
    }
}

fn context() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_batch_size(8192)
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        )
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false);
    SessionContext::new_with_config(config)
}

impl Transform {
    /// Check the table's SQL against its declared schema and work out the
    /// output schema; check the partition columns are in it.
    pub async fn plan(table: &Table) -> Result<Transform> {
        let input_schema = table.input_schema();
        let output_schema = match &table.sql {
            None => input_schema.clone(),
            Some(sql) => {
                let ctx = context();
                let empty = futures::stream::empty();
                register_input(
                    &ctx,
                    input_schema.clone(),
                    Box::pin(RecordBatchStreamAdapter::new(input_schema.clone(), empty)),
                )
                .map_err(|e| Error::transform(&table.name, e))?;
                let df = ctx
                    .sql(sql)
                    .await
                    .map_err(|e| Error::transform(&table.name, format!("invalid sql: {e}")))?;
                let plan = df
                    .create_physical_plan()
                    .await
                    .map_err(|e| Error::transform(&table.name, format!("invalid sql: {e}")))?;
                plan.schema()
            }
        };
        for p in &table.partition_by {
            let field = output_schema.field_with_name(p).map_err(|_| {
                Error::transform(
                    &table.name,
                    format!(
                        "partition column '{p}' is not produced by the {}; it has: {}",
                        if table.sql.is_some() { "sql" } else { "schema" },
                        output_schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            if matches!(
                field.data_type(),
                DataType::List(_)
                    | DataType::Struct(_)
                    | DataType::Map(_, _)
                    | DataType::LargeList(_)
                    | DataType::Binary
                    | DataType::LargeBinary
                    | DataType::Float32
                    | DataType::Float64
            ) {
                return Err(Error::transform(
                    &table.name,
                    format!(
                        "partition column '{p}' has type {}, which cannot be a partition value",
                        field.data_type()
                    ),
                ));
            }
        }
        if output_schema.fields().len() == table.partition_by.len() {
            return Err(Error::transform(
                &table.name,
                "every output column is a partition column: no data columns would be written",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for f in output_schema.fields() {
            if !seen.insert(f.name().to_ascii_lowercase()) {
                return Err(Error::transform(
                    &table.name,
                    format!(
                        "the output has column '{}' twice (names are case-insensitive in Glue and Athena)",
                        f.name()
                    ),
                ));
            }
        }
        Ok(Transform {
            table: table.name.clone(),
            sql: table.sql.clone(),
            input_schema,
            output_schema,
        })
    }

    /// The schema of what the transform produces.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Run over a stream of input batches, yielding output batches.
    pub async fn run(&self, input: SendableRecordBatchStream) -> Result<SendableRecordBatchStream> {
        let Some(sql) = &self.sql else {
            return Ok(input);
        };
        let ctx = context();
        register_input(&ctx, self.input_schema.clone(), input)
            .map_err(|e| Error::transform(&self.table, e))?;
        let df = ctx
            .sql(sql)
            .await
            .map_err(|e| Error::transform(&self.table, e))?;
        df.execute_stream()
            .await
            .map_err(|e| Error::transform(&self.table, e))
    }
}

fn register_input(
    ctx: &SessionContext,
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
) -> datafusion::error::Result<()> {
    let part = Arc::new(OneShot {
        schema: schema.clone(),
        stream: Mutex::new(Some(stream)),
    });
    let table = StreamingTable::try_new(schema, vec![part])?;
    ctx.register_table("input", Arc::new(table))?;
    Ok(())
}
