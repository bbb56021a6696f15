//! `sluice`: run the pipeline on a laptop, inspect and query a lake.
//!
//! The command lives in this library so that the end-to-end tests can build
//! the very same binary (`tests/src/bin/`) in the same cargo invocation.

mod generate;
mod replay;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sluice::catalog::Catalog;
use sluice::config::CatalogKind;
use sluice::config::Pipeline;
use sluice::lookup::Sources;
use sluice::pipeline::{Counters, Engine, RunOptions, Summary};
use sluice::store::AwsOptions;
use sluice::store::Location;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Raw files in, a partitioned Parquet lake out."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Turn the raw files under the input into the lake: plan, transform, write, register.
    Run {
        /// The pipeline file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Folder or URL of the raw files (default: `[input] root` of the config).
        #[arg(long)]
        input: Option<String>,
        /// Folder or URL of the lake (default: `[lake] root` of the config).
        #[arg(long)]
        lake: Option<String>,
        /// Chunks processed at once (default: the number of cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Chunk size: bytes, or with a unit (`64MiB`, `1GB`).
        #[arg(long, default_value = "128MiB", value_parser = parse_size)]
        chunk_size: u64,
        /// Stop at the first file that fails (chunks already running finish).
        /// Without it, every other file is loaded, the failed ones are listed,
        /// and the exit code is non-zero.
        #[arg(long)]
        fail_fast: bool,
    },
    /// Show the plan each table's SQL runs on every chunk: a join with a
    /// lookup is a hash join whose build side is the lookup.
    Explain {
        /// The pipeline file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Folder or URL of the lake, for lookups of its tables (default: `[lake] root`).
        #[arg(long)]
        lake: Option<String>,
        /// Only this table (default: every table with sql).
        #[arg(long)]
        table: Option<String>,
    },
    /// Load Kinesis batches the stream function's event source mapping
    /// gave up on (after its MaximumRetryAttempts), from their failure
    /// records: the records the shard never loaded load once, into the
    /// table that reads the stream; those it had loaded are skipped.
    Replay {
        /// The pipeline file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Folder or URL of the lake (default: `[lake] root` of the config).
        #[arg(long)]
        lake: Option<String>,
        /// The mapping's on-failure queue (the stack's StreamFailureQueue
        /// URL): every message in it is replayed, and deleted once loaded.
        #[arg(long)]
        queue: Option<String>,
        /// Files of failure records: an SQS message body, `aws sqs
        /// receive-message` output, an SNS notification, or one per line.
        failures: Vec<PathBuf>,
    },
    /// List the lake's tables.
    Tables {
        #[command(flatten)]
        lake: LakeArg,
    },
    /// List a table's partitions, with their files and sizes.
    Partitions {
        /// The table.
        table: String,
        #[command(flatten)]
        lake: LakeArg,
    },
    /// Run SQL over the lake's tables.
    Query {
        /// The query, e.g. "SELECT dt, count(*) FROM clickstream GROUP BY dt".
        sql: String,
        #[command(flatten)]
        lake: LakeArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Read Delta tables as of a version (`3`) or a time
        /// (`2026-12-01T10:00:00Z`) instead of their latest snapshot.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Delete the files of Delta tables that no snapshot within the retention needs.
    Vacuum {
        #[command(flatten)]
        lake: LakeArg,
        /// Only this table (default: every Delta table).
        #[arg(long)]
        table: Option<String>,
        /// Keep the files every snapshot younger than this needs (`168h`, `7days`).
        #[arg(long, default_value = "168h", value_parser = humantime::parse_duration)]
        retain: Duration,
        /// List the files that would be deleted, and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Merge each partition's small files into files near the target size, with the same rows.
    Compact {
        #[command(flatten)]
        lake: LakeArg,
        /// Only this table (default: every table).
        #[arg(long)]
        table: Option<String>,
        /// Only this partition, as its path (`dt=2026-11-25/event_type=click`); repeatable.
        #[arg(long, requires = "table")]
        partition: Vec<String>,
        /// Leave files younger than this alone (`0s`: files of any age).
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        min_age: Duration,
        /// The output size to aim for.
        #[arg(long, default_value = "256MiB", value_parser = parse_size)]
        target_size: u64,
        /// Leave a partition alone unless it has at least this many small files.
        #[arg(long, default_value_t = 4)]
        min_files: usize,
        /// Decode and re-encode rows even where column chunks could be copied.
        #[arg(long)]
        reencode: bool,
    },
    /// Write deterministic sample clickstream data.
    Generate {
        /// The folder to write into (files go to `<out>/clickstream/`).
        #[arg(long)]
        out: PathBuf,
        /// Total size of the data (`10MB`, `1GiB`).
        #[arg(long, default_value = "10MB", value_parser = parse_size)]
        size: u64,
        /// `jsonl` or `csv`.
        #[arg(long, value_enum, default_value_t = GenFormat::Jsonl)]
        format: GenFormat,
        /// Number of files to spread the data over.
        #[arg(long, default_value_t = 1)]
        files: u32,
        /// Compress the files.
        #[arg(long, value_enum, default_value_t = GenCompression::None)]
        compress: GenCompression,
        /// Random seed: the same seed gives the same rows.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(clap::Args)]
struct LakeArg {
    /// Folder or URL of the lake.
    #[arg(long)]
    lake: Option<String>,
    /// Or: take the lake from this pipeline file.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl LakeArg {
    /// The lake, and its catalog: the one the pipeline file names (local or
    /// Glue) with `--config`, else the local catalog in the lake.
    async fn open(&self) -> Result<(Location, Arc<dyn Catalog>)> {
        let pipeline = self
            .config
            .as_deref()
            .map(Pipeline::from_file)
            .transpose()?;
        let root = match (&self.lake, &pipeline) {
            (Some(l), _) => l.clone(),
            (None, Some(p)) => p.lake_root.clone(),
            (None, None) => "./lake".to_string(),
        };
        if !root.contains("://") && !std::path::Path::new(&root).is_dir() {
            bail!("no lake at {root}: run `sluice run` first, or pass --lake");
        }
        let lake = Location::open(&root, false)?;
        let kind = pipeline.map(|p| p.catalog).unwrap_or(CatalogKind::Local);
        let catalog = sluice::connect::catalog(&kind, &lake, &AwsOptions::default()).await?;
        Ok((lake, catalog))
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum GenFormat {
    Jsonl,
    Csv,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum GenCompression {
    None,
    Gzip,
    Zstd,
}

fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?} is not a size (use bytes or a unit: 4096, 64MiB, 1GB): {e}"))
}

/// The `sluice` command: parse the arguments, run, exit non-zero with one line on error.
pub fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let workers = match &cli.command {
        Command::Run { workers, .. } => workers.unwrap_or_else(num_cores),
        _ => num_cores(),
    }
    .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(dispatch(cli, workers)) {
        eprintln!("error: {}", one_line(&describe(&e)));
        std::process::exit(1);
    }
}

/// The error and its causes, each once (most errors repeat their cause's text).
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let t = cause.to_string();
        if !t.is_empty() && !text.contains(&t) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&t);
        }
    }
    text
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn num_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

async fn dispatch(cli: Cli, workers: usize) -> Result<()> {
    match cli.command {
        Command::Run {
            config,
            input,
            lake,
            chunk_size,
            fail_fast,
            ..
        } => run(&config, input, lake, workers, chunk_size, fail_fast).await,
        Command::Explain {
            config,
            lake,
            table,
        } => explain(&config, lake, table).await,
        Command::Replay {
            config,
            lake,
            queue,
            failures,
        } => replay::run(&config, lake, queue, failures).await,
        Command::Tables { lake } => tables(lake.open().await?).await,
        Command::Partitions { table, lake } => partitions(lake.open().await?, &table).await,
        Command::Query {
            sql,
            lake,
            format,
            as_of,
        } => query(lake.open().await?, &sql, format, as_of.as_deref()).await,
        Command::Vacuum {
            lake,
            table,
            retain,
            dry_run,
        } => vacuum(lake.open().await?, table, retain, dry_run).await,
        Command::Compact {
            lake,
            table,
            partition,
            min_age,
            target_size,
            min_files,
            reencode,
        } => {
            let options = sluice::compact::CompactOptions {
                target_size,
                min_files,
                min_age,
                force_reencode: reencode,
                ..Default::default()
            };
            compact(lake.open().await?, table, partition, options).await
        }
        Command::Generate {
            out,
            size,
            format,
            files,
            compress,
            seed,
        } => generate(&out, size, format, files, compress, seed),
    }
}

async fn run(
    config: &std::path::Path,
    input: Option<String>,
    lake: Option<String>,
    workers: usize,
    chunk_size: u64,
    fail_fast: bool,
) -> Result<()> {
    let pipeline = Pipeline::from_file(config)?;
    let input_root = input
        .or_else(|| pipeline.input_root.clone())
        .ok_or_else(|| {
            anyhow!(
                "no input: pass --input or set [input] root in {}",
                config.display()
            )
        })?;
    let lake_root = lake.unwrap_or_else(|| pipeline.lake_root.clone());
    if chunk_size == 0 {
        bail!("--chunk-size must be at least 1 byte");
    }
    let input =
        Location::open(&input_root, false).with_context(|| format!("input {input_root}"))?;
    let lake = Location::open(&lake_root, true).with_context(|| format!("lake {lake_root}"))?;
    let (engine, catalog) = engine_on(pipeline, &lake, true).await?;
    let engine = Arc::new(engine);
    for l in &engine.lookups {
        eprintln!(
            "lookup {}: {} rows, {} in memory",
            l.lookup.name,
            l.rows(),
            bytesize::ByteSize::b(l.bytes).display().iec()
        );
    }
    let options = RunOptions {
        fail_fast,
        ..RunOptions::new(workers, chunk_size)
    };
    let counters = Arc::new(Counters::default());
    let reporter = tokio::spawn(report_progress(counters.clone()));
    let result = sluice::pipeline::run(&engine, &input, &lake, &catalog, &options, &counters).await;
    reporter.abort();
    let _ = reporter.await;
    let summary = result?;
    print_summary(&summary, &lake);
    if summary.failed.is_empty() {
        return Ok(());
    }
    let files: std::collections::BTreeSet<&str> =
        summary.failed.iter().map(|f| f.file.as_str()).collect();
    let chunks = summary.failed.len();
    eprintln!(
        "{} of {} files failed ({chunks} {}); every other chunk was loaded and committed:",
        files.len(),
        summary.files_in,
        if chunks == 1 { "chunk" } else { "chunks" }
    );
    for f in &summary.failed {
        let chunk = f.chunk.map(|c| format!(" chunk {c}")).unwrap_or_default();
        let again = if f.retryable {
            " (may succeed if run again)"
        } else {
            ""
        };
        eprintln!("  {}{chunk}: {}{again}", f.file, one_line(&f.error));
    }
    bail!(
        "{} of {} files failed; run again to retry them (committed chunks are not loaded twice)",
        files.len(),
        summary.files_in
    )
}

/// The lake's catalog, and the engine: the pipeline's lookups read (with
/// their rows if `rows`, else only their schemas) and its tables planned.
async fn engine_on(
    pipeline: Pipeline,
    lake: &Location,
    rows: bool,
) -> Result<(Engine, Arc<dyn Catalog>)> {
    let catalog = sluice::connect::catalog(&pipeline.catalog, lake, &AwsOptions::default())
        .await
        .with_context(|| format!("catalog of lake {}", lake.url))?;
    let sources = Sources {
        lake,
        catalog: catalog.as_ref(),
        aws: &AwsOptions::default(),
    };
    let engine = Engine::load(pipeline, sources, rows).await?;
    Ok((engine, catalog))
}

async fn explain(
    config: &std::path::Path,
    lake: Option<String>,
    only: Option<String>,
) -> Result<()> {
    let pipeline = Pipeline::from_file(config)?;
    if let Some(t) = &only
        && pipeline.table(t).is_none()
    {
        bail!("{} has no table '{t}'", config.display());
    }
    let root = lake.unwrap_or_else(|| pipeline.lake_root.clone());
    // Only the lookups' schemas are read; a lake that is not there yet is
    // an empty one (a lookup of one of its tables then says so).
    let lake = if root.contains("://") || std::path::Path::new(&root).is_dir() {
        Location::open(&root, false).with_context(|| format!("lake {root}"))?
    } else {
        Location::memory()
    };
    let (engine, _) = engine_on(pipeline, &lake, false).await?;
    for t in &engine.tables {
        if only.as_ref().is_some_and(|o| *o != t.table.name) {
            continue;
        }
        match t.transform.explain(&t.table).await? {
            None => println!("table {}: no sql; rows are written as read\n", t.table.name),
            Some(plan) => println!("table {}:\n{plan}", t.table.name),
        }
    }
    Ok(())
}

async fn report_progress(counters: Arc<Counters>) {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .expect("template"),
        );
        Some(b)
    } else {
        None
    };
    let _finish = FinishOnDrop(bar.clone());
    let mut last_log = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let bytes = counters.bytes_in.load(Ordering::Relaxed);
        let total = counters.bytes_total.load(Ordering::Relaxed);
        let rows = counters.rows_in.load(Ordering::Relaxed);
        let done = counters.chunks_done.load(Ordering::Relaxed);
        let chunks = counters.chunks_total.load(Ordering::Relaxed);
        let msg = format!(
            "{:.1} MB/s, {:.0} rows/s, chunks {done}/{chunks}",
            bytes as f64 / 1e6 / secs,
            rows as f64 / secs
        );
        match &bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(bytes.min(total));
                b.set_message(msg);
            }
            None if last_log.elapsed() >= Duration::from_secs(5) => {
                last_log = Instant::now();
                eprintln!(
                    "progress: {:.1}/{:.1} MB, {rows} rows, {msg}",
                    bytes as f64 / 1e6,
                    total as f64 / 1e6
                );
            }
            None => {}
        }
    }
}

async fn compact(
    (lake, catalog): (Location, Arc<dyn Catalog>),
    table: Option<String>,
    only: Vec<String>,
    options: sluice::compact::CompactOptions,
) -> Result<()> {
    use sluice::compact::CompactReport;
    use sluice::sink::{Compaction, for_definition};
    let all = sluice::sink::lake_tables(&lake, catalog.as_ref()).await?;
    let tables =
        match &table {
            Some(name) => vec![all.into_iter().find(|t| &t.name == name).ok_or_else(|| {
                anyhow!("no table '{name}' in {} (see `sluice tables`)", lake.url)
            })?],
            None => all,
        };
    let started = Instant::now();
    let mut total = CompactReport::default();
    for t in &tables {
        let upkeep = for_definition(t);
        let table_started = Instant::now();
        let report = if upkeep.compacts_whole_table() {
            if !only.is_empty() {
                bail!(
                    "table '{}' is compacted whole, in one commit (a Delta table): name no --partition",
                    t.name
                );
            }
            let job = Compaction {
                lake: &lake,
                catalog: catalog.as_ref(),
                table: t,
                partition: None,
                options: &options,
                now: chrono::Utc::now(),
            };
            upkeep
                .compact(job)
                .await
                .with_context(|| format!("compacting table '{}'", t.name))?
        } else {
            compact_partitions(&lake, catalog.as_ref(), t, &only, &options).await?
        };
        print_compaction(&t.name, &report, table_started.elapsed().as_secs_f64());
        total.add(&report);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sluice compact: done in {secs:.2} s, {:.1} MB/s merged",
        total.bytes_in as f64 / 1e6 / secs.max(1e-9)
    );
    if total.outputs == 0 && total.busy == 0 {
        println!(
            "  nothing to merge: partitions need {} or more files under {:.0} MB, older than {}",
            options.min_files,
            options.target_size as f64 * 0.75 / 1e6,
            humantime::format_duration(options.min_age)
        );
    }
    Ok(())
}

/// Compact a table partition by partition (all of them, or those of
/// `only`), with progress on stderr every 5 s.
async fn compact_partitions(
    lake: &Location,
    catalog: &dyn Catalog,
    t: &sluice::catalog::TableDef,
    only: &[String],
    options: &sluice::compact::CompactOptions,
) -> Result<sluice::compact::CompactReport> {
    let mut partitions = catalog.partitions(&t.name).await?;
    if !only.is_empty() {
        for p in only {
            if !partitions.iter().any(|q| &q.path == p) {
                bail!(
                    "table '{}' has no partition {p:?} (see `sluice partitions {}`)",
                    t.name,
                    t.name
                );
            }
        }
        partitions.retain(|p| only.contains(&p.path));
    }
    let upkeep = sluice::sink::for_definition(t);
    let mut last_log = Instant::now();
    let mut report = sluice::compact::CompactReport::default();
    for (i, p) in partitions.iter().enumerate() {
        let job = sluice::sink::Compaction {
            lake,
            catalog,
            table: t,
            partition: Some(p),
            options,
            now: chrono::Utc::now(),
        };
        let r = upkeep
            .compact(job)
            .await
            .with_context(|| format!("compacting table '{}', partition {}", t.name, p.path))?;
        report.add(&r);
        if last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            eprintln!(
                "progress: table {}: {}/{} partitions, {} compacted, {:.1} MB merged",
                t.name,
                i + 1,
                partitions.len(),
                report.compacted,
                report.bytes_in as f64 / 1e6
            );
        }
    }
    Ok(report)
}

/// One table's compaction, as a line (and notes) on stdout.
fn print_compaction(name: &str, report: &sluice::compact::CompactReport, secs: f64) {
    let busy = if report.busy > 0 {
        format!(", {} busy (another compaction holds them)", report.busy)
    } else {
        String::new()
    };
    let version = match report.version {
        Some(v) => format!(", committed version {v}"),
        None => String::new(),
    };
    println!(
        "{name}: {} partitions, {} compacted{busy}{version}: {} files -> {} ({} merged into {}, {:.1} MB -> {:.1} MB, {} rows; column chunks copied in {} of {} outputs; {:.2} s, {:.1} MB/s)",
        report.partitions,
        report.compacted,
        report.files_before,
        report.files_after,
        report.inputs,
        report.outputs,
        report.bytes_in as f64 / 1e6,
        report.bytes_out as f64 / 1e6,
        report.rows,
        report.copied,
        report.outputs,
        secs,
        report.bytes_in as f64 / 1e6 / secs.max(1e-9)
    );
    if report.recovered > 0 {
        println!(
            "  settled {} interrupted compactions first",
            report.recovered
        );
    }
    if report.outputs > 0 && report.version.is_none() {
        println!(
            "  longest time an output and its inputs were both listed: {} ms",
            report.max_overlap_ms
        );
    }
}

struct FinishOnDrop(Option<ProgressBar>);
impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

fn print_summary(s: &Summary, lake: &Location) {
    let mb = |b: u64| b as f64 / 1e6;
    println!("sluice run: done in {:.2} s", s.seconds);
    println!(
        "  in:  {} files, {:.1} MB, {} chunks, {} rows",
        s.files_in,
        mb(s.bytes_in),
        s.chunks,
        s.rows_in
    );
    println!(
        "  out: {} rows ({} rejected), {} partitions, {} files, {:.1} MB",
        s.rows_out,
        s.rows_rejected,
        s.partitions,
        s.files_out,
        mb(s.bytes_out)
    );
    println!(
        "  throughput: {:.1} MB/s, {:.0} rows/s",
        mb(s.bytes_in) / s.seconds.max(1e-9),
        s.rows_in as f64 / s.seconds.max(1e-9)
    );
    println!("  lake: {}", lake.url);
    if s.delta_commits > 0 {
        println!(
            "  delta: {} commits made the chunks visible (each holds every chunk that finished while the one before was written)",
            s.delta_commits
        );
    }
    if s.cdc.changes > 0 || s.tombstones > 0 {
        let c = &s.cdc;
        println!(
            "  cdc: {} changes merged: {} rows upserted, {} deleted, {} stale (already applied, or older than the row there: ignored); {} table files read, {} rewritten; {} tombstones skipped",
            c.changes,
            c.upserted,
            c.deleted,
            c.stale,
            c.files_read,
            c.files_rewritten,
            s.tombstones
        );
    }
    if s.chunks_skipped > 0 {
        println!(
            "  {} of {} chunks were committed by an earlier run and not processed again",
            s.chunks_skipped, s.chunks
        );
    }
    if s.rows_rejected > 0 {
        println!(
            "  rejected records (with file, byte offset and reason): {}/_quarantine/",
            lake.url
        );
    }
    if s.chunks_replaced > 0 {
        println!(
            "  {} chunks of older versions of re-uploaded files were replaced (their rows removed)",
            s.chunks_replaced
        );
    }
    if s.values_discarded > 0 {
        println!(
            "  {} values were dropped or nulled by the tables' contracts (unknown fields, wrong types)",
            s.values_discarded
        );
    }
    if !s.unmatched.is_empty() {
        println!(
            "  skipped {} files that match no table's source, e.g. {}",
            s.unmatched.len(),
            s.unmatched[0]
        );
    }
}

async fn tables((lake, catalog): (Location, Arc<dyn Catalog>)) -> Result<()> {
    let delta_tables = sluice::delta::tables(&lake).await?;
    let hive_tables: Vec<_> = catalog
        .tables()
        .await?
        .into_iter()
        .filter(|t| !delta_tables.contains(&t.name))
        .collect();
    if hive_tables.is_empty() && delta_tables.is_empty() {
        println!("no tables in {}", lake.url);
        return Ok(());
    }
    if !hive_tables.is_empty() {
        println!(
            "{:<24} {:<6} {:>8} {:>11}  {:<28} location",
            "table", "format", "columns", "partitions", "partition keys"
        );
    }
    for t in hive_tables {
        let n = catalog.partitions(&t.name).await?.len();
        let keys = t
            .partition_keys
            .iter()
            .map(|k| format!("{} {}", k.name, k.hive_type))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{:<24} {:<6} {:>8} {:>11}  {:<28} {}/{}/",
            t.name,
            "hive",
            t.columns.len(),
            n,
            keys,
            lake.url,
            t.location
        );
    }
    if !delta_tables.is_empty() {
        println!(
            "{:<24} {:<6} {:>8} {:>8} {:>12} {:>12}  {:<20} {:<20} location",
            "table", "format", "version", "files", "rows", "bytes", "partition keys", "committed"
        );
    }
    for name in delta_tables {
        let Some(info) = sluice::delta::info(&lake, &name).await? else {
            continue;
        };
        let committed = info
            .committed_at
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        println!(
            "{:<24} {:<6} {:>8} {:>8} {:>12} {:>12}  {:<20} {:<20} {}/{}/",
            name,
            "delta",
            info.version,
            info.files,
            info.rows,
            info.bytes,
            info.partition_columns.join(", "),
            committed,
            lake.url,
            name
        );
    }
    Ok(())
}

async fn vacuum(
    (lake, catalog): (Location, Arc<dyn Catalog>),
    table: Option<String>,
    retain: Duration,
    dry_run: bool,
) -> Result<()> {
    let all = sluice::sink::lake_tables(&lake, catalog.as_ref()).await?;
    let tables =
        match table {
            Some(name) => vec![all.into_iter().find(|t| t.name == name).ok_or_else(|| {
                anyhow!("no table '{name}' in {} (see `sluice tables`)", lake.url)
            })?],
            None => all,
        };
    for t in tables {
        let upkeep = sluice::sink::for_definition(&t);
        let job = sluice::sink::Vacuum {
            lake: &lake,
            table: &t.name,
            retain,
            dry_run,
        };
        let files = upkeep.vacuum(job).await?;
        let verb = if dry_run { "would delete" } else { "deleted" };
        println!(
            "{}: {verb} {} files (removed from the table more than {} ago, or of chunks that never committed)",
            t.name,
            files.len(),
            humantime::format_duration(retain)
        );
        if dry_run {
            for f in files {
                println!("  {f}");
            }
        }
    }
    Ok(())
}

async fn partitions((lake, catalog): (Location, Arc<dyn Catalog>), table: &str) -> Result<()> {
    let Some(def) = catalog.table(table).await? else {
        let names: Vec<_> = catalog
            .tables()
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        bail!(
            "no table '{table}' in {} (tables: {})",
            lake.url,
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        );
    };
    let parts = catalog.partitions(table).await?;
    println!("{:<48} {:>6} {:>12}", "partition", "files", "bytes");
    let (mut files, mut bytes) = (0u64, 0u64);
    for p in &parts {
        let prefix = lake.child(&format!("{}/{}", def.location, p.path))?;
        let mut listing = lake.store.list(Some(&prefix));
        let (mut f, mut b) = (0u64, 0u64);
        while let Some(m) = listing.next().await {
            let m = m?;
            if m.location.as_ref().ends_with(".parquet") {
                f += 1;
                b += m.size;
            }
        }
        files += f;
        bytes += b;
        println!("{:<48} {:>6} {:>12}", p.path, f, b);
    }
    println!("{} partitions, {files} files, {bytes} bytes", parts.len());
    Ok(())
}

async fn query(
    (lake, catalog): (Location, Arc<dyn Catalog>),
    sql: &str,
    format: OutputFormat,
    as_of: Option<&str>,
) -> Result<()> {
    let ctx = sluice::query::lake_context(&lake, catalog.as_ref(), as_of).await?;
    let df = ctx.sql(sql).await.map_err(|e| anyhow!("query: {e}"))?;
    let batches = df.collect().await.map_err(|e| anyhow!("query: {e}"))?;
    let stdout = std::io::stdout();
    match format {
        OutputFormat::Table => {
            println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(stdout.lock());
            for b in &batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(stdout.lock());
            for b in &batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}

fn generate(
    out: &std::path::Path,
    size: u64,
    format: GenFormat,
    files: u32,
    compress: GenCompression,
    seed: u64,
) -> Result<()> {
    use std::io::Write;
    let dir = out.join("clickstream");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = files.max(1);
    let per_file = size.div_ceil(files as u64);
    let mut generator = generate::Generator::new(seed);
    let mut rows = 0;
    for i in 0..files {
        let ext = match format {
            GenFormat::Jsonl => "jsonl",
            GenFormat::Csv => "csv",
        };
        let suffix = match compress {
            GenCompression::None => "",
            GenCompression::Gzip => ".gz",
            GenCompression::Zstd => ".zst",
        };
        let path = dir.join(format!("events-{i:05}.{ext}{suffix}"));
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut w: Box<dyn Write> = match compress {
            GenCompression::None => Box::new(std::io::BufWriter::new(file)),
            GenCompression::Gzip => Box::new(flate2::write::GzEncoder::new(
                std::io::BufWriter::new(file),
                flate2::Compression::default(),
            )),
            GenCompression::Zstd => Box::new(
                zstd::stream::write::Encoder::new(std::io::BufWriter::new(file), 3)?.auto_finish(),
            ),
        };
        rows += generate::write_events(&mut generator, format == GenFormat::Csv, per_file, &mut w)?;
        w.flush()?;
        drop(w);
    }
    println!("wrote {rows} rows in {files} files under {}", dir.display());
    Ok(())
}
