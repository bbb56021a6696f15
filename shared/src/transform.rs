//! The SQL step: the table's `sql` runs with DataFusion over a chunk's
//! batches, registered as the table `input`. Without `sql` batches pass
//! through unchanged.
//!
//! [`Transform::plan`] checks the query once at start-up, against the
//! declared schema and with no data: a bad query, or a `partition_by` column
//! that it does not produce, fails before anything is read.
//!
//! The SQL may join lookups ([`crate::lookup`]), each registered under its
//! name as an in-memory table. Every join of a chunk's rows with a lookup
//! must run as a hash join whose build side is the lookup, so that the
//! chunk streams past it: a planner rule ([`LookupBuildSide`]) swaps the
//! sides where DataFusion, knowing nothing of the chunk's size, put the
//! chunk on the build side, and [`check_joins`] refuses at start-up a join
//! that is not an equi-join, joins the chunk with itself, or would repeat
//! the lookup's rows in every chunk (RIGHT or FULL joins keeping the
//! lookup's unmatched rows).

use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, displayable, execute_stream};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::config::Table;
use crate::error::{Error, Result};
use crate::lookup::Loaded;

/// A checked transform for one table.
#[derive(Debug, Clone)]
pub struct Transform {
    table: String,
    sql: Option<String>,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
    /// The lookups registered beside `input` (all of the pipeline's).
    lookups: Vec<Arc<Loaded>>,
    /// The SQL's plan, planned once, when it can run again for every chunk
    /// ([`runs_again`]); else each chunk plans the SQL.
    planned: Option<Planned>,
}

/// A physical plan and the task context it runs in, less the chunk.
#[derive(Clone)]
struct Planned {
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    /// Whether every function the SQL calls is immutable (the same result
    /// for the same arguments, whenever it runs); see [`runs_again`].
    immutable: bool,
}

impl std::fmt::Debug for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Planned")
    }
}

/// A chunk's input, handed to its plan's `input` through the task context
/// it runs in ([`InputSlot`]), so that one plan serves chunk after chunk,
/// and chunks at once.
struct ChunkInput(Mutex<Option<SendableRecordBatchStream>>);

/// `input`'s one partition: the chunk of the task context it is run in, once.
#[derive(Debug)]
struct InputSlot {
    schema: SchemaRef,
}

impl PartitionStream for InputSlot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let input = ctx.session_config().get_extension::<ChunkInput>();
        match input.and_then(|i| i.0.lock().expect("not poisoned").take()) {
            Some(s) => s,
            None => Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async {
                    Err(datafusion::error::DataFusionError::Execution(
                        "the chunk's input was already read, or not given".into(),
                    ))
                }),
            )),
        }
    }
}

/// A context for one chunk: one partition, DataFusion's optimizer with
/// [`LookupBuildSide`] right after its join selection (before anything that
/// builds on the join's sides), and the lookups registered.
fn context(lookups: &[Arc<Loaded>]) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_batch_size(8192)
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        )
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false);
    let mut rules = PhysicalOptimizer::new().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == "join_selection")
        .map_or(0, |i| i + 1);
    rules.insert(at, Arc::new(LookupBuildSide));
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features();
    // Joins with lookups build on the lookups' rows: the chunk's query
    // takes its memory from a pool bounded by the lookups' budget.
    if let Some(l) = lookups.first() {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(l.budget().query_pool())
            .build_arc()
            .map_err(|e| Error::Config(format!("lookup '{}': {e}", l.lookup.name)))?;
        state = state.with_runtime_env(runtime);
    }
    let state = state.with_physical_optimizer_rules(rules).build();
    let ctx = SessionContext::new_with_state(state);
    for l in lookups {
        ctx.register_table(l.lookup.name.as_str(), l.provider()?)
            .map_err(|e| Error::Config(format!("lookup '{}': {e}", l.lookup.name)))?;
    }
    Ok(ctx)
}

/// Whether `plan` reads the chunk (`input`) anywhere below it.
fn reads_input(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<StreamingTableExec>().is_some()
        || plan.children().into_iter().any(reads_input)
}

/// Puts a lookup on the build (left) side of every hash join of the chunk
/// with a lookup: DataFusion has no size for the chunk's stream and keeps
/// the sides as written, which would collect the whole chunk into a hash
/// table and stream the lookup past it.
#[derive(Debug)]
struct LookupBuildSide;

impl PhysicalOptimizerRule for LookupBuildSide {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(join) = node.downcast_ref::<HashJoinExec>()
                && reads_input(join.left())
                && !reads_input(join.right())
                && join.join_type().supports_swap()
            {
                return Ok(Transformed::yes(join.swap_inputs(*join.partition_mode())?));
            }
            Ok(Transformed::no(node))
        })
        .data()
    }

    fn name(&self) -> &str {
        "sluice_lookup_build_side"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Refuse joins of the chunk that would not stream it past a lookup's hash
/// table, naming the table and the join.
fn check_joins(table: &str, plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
    let children = plan.children();
    if children.len() >= 2 && plan.name().contains("Join") {
        let sides: Vec<bool> = children.iter().map(|c| reads_input(c)).collect();
        let input_sides = sides.iter().filter(|s| **s).count();
        let refuse = |why: String| Err(Error::transform(table, why));
        if input_sides > 1 {
            return refuse(
                "the sql joins `input` with itself; a chunk holds only part of a file, so such a join would depend on where the file was cut".into(),
            );
        }
        if input_sides == 1 {
            let Some(join) = plan.downcast_ref::<HashJoinExec>() else {
                return refuse(format!(
                    "a join of `input` with a lookup must be an equi-join (ON input.a = lookup.b [AND ...]), which runs as a hash join with the lookup as its build side; this one plans as {}",
                    plan.name()
                ));
            };
            if sides[0] {
                return refuse(format!(
                    "the {} join cannot run with the lookup as its build side; write it as an inner or LEFT join from `input` (for NOT IN over a lookup, NOT EXISTS)",
                    join.join_type()
                ));
            }
            if !matches!(
                join.join_type(),
                JoinType::Inner
                    | JoinType::Right
                    | JoinType::RightSemi
                    | JoinType::RightAnti
                    | JoinType::RightMark
            ) {
                return refuse(format!(
                    "the join keeps rows of the lookup that match nothing (it plans as a {} join), so every chunk would write them again; use an inner or LEFT join from `input`",
                    join.join_type()
                ));
            }
        }
    }
    for c in children {
        check_joins(table, c)?;
    }
    Ok(())
}

impl Transform {
    /// Check the table's SQL against its declared schema and work out the
    /// output schema; check the partition columns are in it.
    pub async fn plan(table: &Table, lookups: &[Arc<Loaded>]) -> Result<Transform> {
        let input_schema = table.input_schema();
        let (output_schema, planned) = match &table.sql {
            None => (input_schema.clone(), None),
            Some(sql) => {
                let planned = physical_plan(table, sql, lookups).await?;
                let schema = planned.plan.schema();
                (schema, runs_again(&planned).then_some(planned))
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
            lookups: lookups.to_vec(),
            planned,
        })
    }

    /// The physical plan a chunk runs, indented (no SQL: none).
    pub async fn explain(&self, table: &Table) -> Result<Option<String>> {
        let Some(sql) = &self.sql else {
            return Ok(None);
        };
        let plan = physical_plan(table, sql, &self.lookups).await?.plan;
        let mut out = String::new();
        render(&plan, &self.lookups, 0, &mut out);
        Ok(Some(out))
    }

    /// The lookups its SQL may join.
    pub fn lookups(&self) -> &[Arc<Loaded>] {
        &self.lookups
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
        if let Some(l) = self.lookups.iter().find(|l| l.batch.is_none()) {
            // Only the schema was read (a process that plans but does not
            // transform): joining it would drop every match.
            return Err(Error::transform(
                &self.table,
                format!(
                    "lookup '{}' was read without its rows; this process cannot transform",
                    l.lookup.name
                ),
            ));
        }
        let failed = |e| Error::transform(&self.table, e);
        let Planned { plan, task, .. } = match &self.planned {
            // With its state (its metrics) reset for this chunk.
            Some(p) => Planned {
                plan: reset_plan_states(p.plan.clone()).map_err(failed)?,
                ..p.clone()
            },
            None => plan_sql(context(&self.lookups)?, self.input_schema.clone(), sql)
                .await
                .map_err(failed)?,
        };
        let config = task
            .session_config()
            .clone()
            .with_extension(Arc::new(ChunkInput(Mutex::new(Some(input)))));
        let task = Arc::new(TaskContext::new(
            task.task_id(),
            task.session_id(),
            config,
            task.scalar_functions().clone(),
            task.higher_order_functions().clone(),
            task.aggregate_functions().clone(),
            task.window_functions().clone(),
            task.runtime_env(),
        ));
        execute_stream(plan, task).map_err(failed)
    }
}

/// One line per node, indented as DataFusion's EXPLAIN; the chunk's scan
/// and each lookup's are named.
fn render(plan: &Arc<dyn ExecutionPlan>, lookups: &[Arc<Loaded>], depth: usize, out: &mut String) {
    let line = displayable(plan.as_ref()).one_line().to_string();
    out.push_str(&"  ".repeat(depth));
    out.push_str(line.trim_end());
    if plan.downcast_ref::<StreamingTableExec>().is_some() {
        out.push_str("   <- the chunk (input)");
    } else if plan.children().is_empty() {
        let schema = plan.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        if let Some(l) = lookups.iter().find(|l| {
            names
                .iter()
                .all(|n| l.schema.fields().iter().any(|f| f.name() == n))
        }) {
            out.push_str(&format!("   <- lookup '{}'", l.lookup.name));
        }
    }
    out.push('\n');
    for c in plan.children() {
        render(c, lookups, depth + 1, out);
    }
}

/// Whether a plan may run again, for chunk after chunk, once its state is
/// reset ([`reset_plan_states`]):
/// - made only of nodes that keep nothing from one run to the next but
///   metrics. A join (whose dynamic filters DataFusion cannot reset), a sort
///   (its top-k filter), an aggregate or a window is planned again for
///   every chunk;
/// - calling only immutable functions. DataFusion folds a stable one
///   (`now()`, `current_date`) to its value when it plans: a plan kept
///   would give every chunk the time of the first.
fn runs_again(planned: &Planned) -> bool {
    fn stateless(plan: &Arc<dyn ExecutionPlan>) -> bool {
        let node = plan.downcast_ref::<ProjectionExec>().is_some()
            || plan.downcast_ref::<FilterExec>().is_some()
            || plan
                .downcast_ref::<StreamingTableExec>()
                .is_some_and(|s| s.limit().is_none());
        node && plan.children().into_iter().all(stateless)
    }
    planned.immutable && stateless(&planned.plan)
}

/// Whether every scalar function `plan` calls is immutable.
fn calls_only_immutable(plan: &LogicalPlan) -> datafusion::error::Result<bool> {
    let mut immutable = true;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    immutable = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(immutable)
}

/// The table's SQL planned, its joins checked; invalid SQL is named as such.
async fn physical_plan(table: &Table, sql: &str, lookups: &[Arc<Loaded>]) -> Result<Planned> {
    let invalid = |e: datafusion::error::DataFusionError| {
        let mut message = format!("invalid sql: {e}");
        if message.contains("not found") {
            let names: Vec<&str> = std::iter::once("input")
                .chain(lookups.iter().map(|l| l.lookup.name.as_str()))
                .collect();
            message.push_str(&format!(
                " (the sql reads the tables: {})",
                names.join(", ")
            ));
        }
        Error::transform(&table.name, message)
    };
    let planned = plan_sql(context(lookups)?, table.input_schema(), sql)
        .await
        .map_err(invalid)?;
    check_joins(&table.name, &planned.plan)?;
    Ok(planned)
}

/// `sql` planned in `ctx` (a chunk's [`context`]), over an `input` of
/// `schema` whose rows come from the task context the plan is run in.
async fn plan_sql(
    ctx: SessionContext,
    schema: SchemaRef,
    sql: &str,
) -> datafusion::error::Result<Planned> {
    let slot = Arc::new(InputSlot {
        schema: schema.clone(),
    });
    ctx.register_table(
        "input",
        Arc::new(StreamingTable::try_new(schema, vec![slot])?),
    )?;
    let df = ctx.sql(sql).await?;
    let immutable = calls_only_immutable(df.logical_plan())?;
    Ok(Planned {
        plan: df.create_physical_plan().await?,
        task: ctx.task_ctx(),
        immutable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pipeline;
    use crate::lookup::{Lookup, LookupSource};
    use arrow::array::{Array, Int64Array, StringArray};
    use futures::TryStreamExt;

    fn orders(sql: &str) -> Table {
        let toml = format!(
            "[[tables]]\nname = \"orders\"\nsource = \"o/\"\nformat = \"jsonl\"\nsql = \"\"\"{sql}\"\"\"\n[tables.schema]\nid = \"int64\"\ncustomer = \"int64\"\n"
        );
        Pipeline::from_toml(&toml).unwrap().tables.remove(0)
    }

    fn customers() -> Arc<Loaded> {
        let lookup = Lookup {
            name: "customers".into(),
            source: LookupSource::Table("customers".into()),
            max_bytes: 1 << 20,
            refresh: std::time::Duration::from_secs(60),
        };
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("cid", DataType::Int64, true),
            arrow::datatypes::Field::new("segment", DataType::Utf8, true),
        ]));
        let batch = arrow::array::RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(2), None])),
                Arc::new(StringArray::from(vec!["a", "b", "b2", "null-key"])),
            ],
        )
        .unwrap();
        Arc::new(Loaded::in_memory(lookup, batch))
    }

    fn input(table: &Table) -> SendableRecordBatchStream {
        let schema = table.input_schema();
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![10, 11, 12, 13])),
                Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(3), None])),
            ],
        )
        .unwrap();
        Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(vec![Ok(batch)]),
        ))
    }

    /// The join nodes of a plan: (reads the chunk on the left, on the right, join type).
    fn joins(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<(bool, bool, JoinType)>) {
        if let Some(j) = plan.downcast_ref::<HashJoinExec>() {
            out.push((
                reads_input(j.left()),
                reads_input(j.right()),
                *j.join_type(),
            ));
        }
        for c in plan.children() {
            joins(c, out);
        }
    }

    #[tokio::test]
    async fn a_left_join_streams_the_chunk_past_the_lookup_and_keeps_every_row() {
        let t = orders(
            "SELECT o.id, c.segment FROM input o LEFT JOIN customers c ON o.customer = c.cid",
        );
        let lookups = vec![customers()];
        let plan = physical_plan(&t, t.sql.as_deref().unwrap(), &lookups)
            .await
            .unwrap()
            .plan;
        let mut found = Vec::new();
        joins(&plan, &mut found);
        assert_eq!(found, vec![(false, true, JoinType::Right)]);

        let transform = Transform::plan(&t, &lookups).await.unwrap();
        let out: Vec<_> = transform
            .run(input(&t))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut rows = Vec::new();
        for b in &out {
            let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let seg = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..b.num_rows() {
                let s = (!seg.is_null(i)).then(|| seg.value(i).to_string());
                rows.push((ids.value(i), s));
            }
        }
        rows.sort();
        // 11 matches twice (a duplicate key: every match), 12 and the null
        // key match nothing (not even the lookup's null key) and stay.
        assert_eq!(
            rows,
            vec![
                (10, Some("a".to_string())),
                (11, Some("b".to_string())),
                (11, Some("b2".to_string())),
                (12, None),
                (13, None)
            ]
        );
    }

    #[tokio::test]
    async fn a_chunks_join_takes_its_memory_from_a_pool_the_lookups_budget_bounds() {
        let t = orders(
            "SELECT o.id, c.segment FROM input o LEFT JOIN customers c ON o.customer = c.cid",
        );
        let rows = customers().batch.clone().unwrap();
        // A pool of twice 64 bytes cannot hold the join's build side.
        let tight = Loaded::in_memory(customers().lookup.clone(), rows)
            .within(crate::lookup::Budget::new(64, "the test"));
        let transform = Transform::plan(&t, &[Arc::new(tight)]).await.unwrap();
        let result: std::result::Result<Vec<_>, _> =
            transform.run(input(&t)).await.unwrap().try_collect().await;
        let e = result.unwrap_err().to_string();
        assert!(
            e.contains("Resources exhausted") && e.contains("HashJoinInput"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_inner_join_written_lookup_first_still_builds_on_the_lookup() {
        let t = orders(
            "SELECT o.id, c.segment FROM customers c JOIN input o ON o.customer = c.cid WHERE o.id > 0",
        );
        let plan = physical_plan(&t, t.sql.as_deref().unwrap(), &[customers()])
            .await
            .unwrap()
            .plan;
        let mut found = Vec::new();
        joins(&plan, &mut found);
        assert_eq!(found, vec![(false, true, JoinType::Inner)]);
    }

    #[tokio::test]
    async fn joins_that_would_not_stream_the_chunk_are_refused_naming_the_table() {
        for (sql, says) in [
            (
                "SELECT o.id FROM input o RIGHT JOIN customers c ON o.customer = c.cid",
                "keeps rows of the lookup",
            ),
            (
                "SELECT o.id FROM input o FULL JOIN customers c ON o.customer = c.cid",
                "keeps rows of the lookup",
            ),
            (
                "SELECT o.id FROM input o JOIN customers c ON o.customer < c.cid",
                "must be an equi-join",
            ),
            (
                "SELECT o.id FROM input o CROSS JOIN customers c",
                "must be an equi-join",
            ),
            (
                "SELECT a.id FROM input a JOIN input b ON a.id = b.customer",
                "joins `input` with itself",
            ),
            (
                "SELECT o.id FROM input o JOIN suppliers s ON o.customer = s.id",
                "the sql reads the tables: input, customers",
            ),
        ] {
            let e = Transform::plan(&orders(sql), &[customers()])
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("table 'orders'") && e.contains(says),
                "{sql}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn a_lookup_read_without_its_rows_refuses_to_transform() {
        let t = orders(
            "SELECT o.id, c.segment FROM input o LEFT JOIN customers c ON o.customer = c.cid",
        );
        let full = customers();
        let schema_only = Arc::new(Loaded::schema_only(
            full.lookup.clone(),
            full.schema.clone(),
        ));
        let transform = Transform::plan(&t, &[schema_only]).await.unwrap();
        let e = match transform.run(input(&t)).await {
            Ok(_) => panic!("ran without the lookup's rows"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains("lookup 'customers' was read without its rows"),
            "{e}"
        );
    }

    /// A chunk of `ids` (customer = id * 10, the last one null).
    fn chunk(table: &Table, ids: std::ops::Range<i64>) -> SendableRecordBatchStream {
        let schema = table.input_schema();
        let customers: Vec<Option<i64>> = ids
            .clone()
            .map(|i| (i < ids.end - 1).then_some(i * 10))
            .collect();
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(ids)),
                Arc::new(Int64Array::from(customers)),
            ],
        )
        .unwrap();
        Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(vec![Ok(batch)]),
        ))
    }

    /// The rows of a transform's output, as (id, c).
    async fn rows(out: SendableRecordBatchStream) -> Vec<(i64, Option<i64>)> {
        let batches: Vec<_> = out.try_collect().await.unwrap();
        let mut rows = Vec::new();
        for b in batches {
            let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let c = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            rows.extend(
                (0..b.num_rows()).map(|i| (id.value(i), c.is_valid(i).then(|| c.value(i)))),
            );
        }
        rows
    }

    #[tokio::test]
    async fn a_projection_and_filter_is_planned_once_and_runs_each_chunk_on_its_own_rows() {
        let t = orders("SELECT id, customer + 1 AS c FROM input WHERE id % 2 = 0");
        let transform = Transform::plan(&t, &[]).await.unwrap();
        let planned = transform.planned.clone().expect("planned once");
        let expected = |ids: std::ops::Range<i64>| -> Vec<(i64, Option<i64>)> {
            let last = ids.end - 1;
            ids.filter(|i| i % 2 == 0)
                .map(|i| (i, (i < last).then_some(i * 10 + 1)))
                .collect()
        };
        // Chunk after chunk, then two at once (as the workers run them).
        for ids in [0..5, 100..108, 7..8] {
            assert_eq!(
                rows(transform.run(chunk(&t, ids.clone())).await.unwrap()).await,
                expected(ids)
            );
        }
        let (a, b) = (
            transform.run(chunk(&t, 0..6)).await.unwrap(),
            transform.run(chunk(&t, 50..53)).await.unwrap(),
        );
        let (a, b) = futures::join!(rows(a), rows(b));
        assert_eq!((a, b), (expected(0..6), expected(50..53)));
        // Each run ran a copy with its own state: the plan kept has run none.
        let mut metrics = Vec::new();
        let _ = planned.plan.apply(|p| {
            metrics.extend(p.metrics().iter().flat_map(|m| m.iter().cloned()));
            Ok(TreeNodeRecursion::Continue)
        });
        assert!(metrics.is_empty(), "the plan kept has run: {metrics:?}");
    }

    #[tokio::test]
    async fn the_stream_examples_sql_is_planned_once() {
        // Hashing, lower-casing, casting and filtering: what bench/stream.sh
        // measures, where planning was 4% of a batch.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/streams/sluice.toml"
        );
        let pipeline = Pipeline::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
        let transform = Transform::plan(&pipeline.tables[0], &[]).await.unwrap();
        assert!(transform.planned.is_some());
    }

    #[tokio::test]
    async fn a_join_an_aggregate_or_the_clock_is_planned_again_for_each_chunk() {
        for sql in [
            "SELECT o.id, c.segment FROM input o LEFT JOIN customers c ON o.customer = c.cid",
            "SELECT customer, count(*) AS n FROM input GROUP BY customer",
            "SELECT id, customer FROM input ORDER BY id LIMIT 2",
            "SELECT id, now() AS loaded_at FROM input",
            "SELECT id FROM input WHERE id > (SELECT 1 + extract(hour FROM current_time()))",
            "SELECT id, random() AS r FROM input",
        ] {
            let transform = Transform::plan(&orders(sql), &[customers()]).await.unwrap();
            assert!(transform.planned.is_none(), "{sql}");
        }
        // `now()` is each chunk's time, not the first chunk's.
        let t = orders("SELECT id, now() AS loaded_at FROM input");
        let transform = Transform::plan(&t, &[]).await.unwrap();
        let mut times = Vec::new();
        for ids in [0..2, 2..4] {
            let out: Vec<_> = transform
                .run(chunk(&t, ids))
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let at = out[0]
                .column(1)
                .as_any()
                .downcast_ref::<arrow::array::TimestampNanosecondArray>()
                .unwrap()
                .value(0);
            times.push(at);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(times[1] > times[0], "{times:?}");
        // Planned again, it gives each chunk its own rows.
        let t = orders("SELECT id, customer FROM input ORDER BY id DESC LIMIT 2");
        let transform = Transform::plan(&t, &[]).await.unwrap();
        for (ids, expected) in [
            (0..5, vec![(4, None), (3, Some(30))]),
            (10..12, vec![(11, None), (10, Some(100))]),
        ] {
            assert_eq!(
                rows(transform.run(chunk(&t, ids)).await.unwrap()).await,
                expected
            );
        }
    }
}
