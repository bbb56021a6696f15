//! What a function reads once at start-up ([`Settings`], from the
//! environment) and builds once ([`Deps`]: the stores, the SQS client, and
//! the [`Parts`] its function uses: the catalog, the engine), then shares
//! across invocations.

use std::future::Future;
use std::sync::Arc;

use sluice::catalog::Catalog;
use sluice::compact::CompactOptions;
use sluice::config::{CatalogKind, Pipeline, SourceMatch};
use sluice::lookup::Sources;
use sluice::pipeline::Engine;
use sluice::plan::DEFAULT_CHUNK_SIZE;
use sluice::read::ReadOptions;
use sluice::store::{AwsOptions, Location, read_text};

/// What a function opens at start besides its stores and SQS client. Each
/// function's `main` names its own ([`Planner`], [`Transformer`],
/// [`Committer`], [`Compactor`]) as a type, so its binary links only the code those parts
/// reach: a choice made on a value at run time would link every part into
/// every function (DataFusion, delta-rs and the Glue client into the
/// planner, which calls none of them).
pub trait Parts {
    /// The catalog the pipeline names (Glue, or the lake's own), if the
    /// function reads or writes one: by default it does.
    fn catalog(
        kind: &CatalogKind,
        lake: &Location,
        aws: &AwsOptions,
    ) -> impl Future<Output = sluice::Result<Option<Arc<dyn Catalog>>>> + Send {
        async move { sluice::connect::catalog(kind, lake, aws).await.map(Some) }
    }

    /// The engine, if the function uses one: the tables' sinks, and for a
    /// function that transforms, their SQL planned and their lookups read.
    /// `sources` is none when the function opened no catalog.
    fn engine(
        pipeline: Pipeline,
        sources: Option<Sources<'_>>,
    ) -> impl Future<Output = sluice::Result<Option<Engine>>> + Send;
}

/// The planner's parts: none. It matches files to tables by the pipeline
/// alone and registers nothing.
pub struct Planner;

/// The transform's and the stream function's parts: the catalog, and the
/// engine with every table's SQL planned and its lookups' rows read.
pub struct Transformer;

/// The catalog function's parts: the catalog, and each table's sink (its SQL
/// is never planned, its lookups never read, so the function needs no access
/// to where lookups are).
pub struct Committer;

/// The compactor's parts: the catalog alone. It finds each table's
/// definition there and compacts through [`sluice::sink::for_definition`],
/// never through a table's sink, so the sinks' commits and merges (DataFusion
/// plans) stay out of its binary.
pub struct Compactor;

impl Parts for Planner {
    async fn catalog(
        _: &CatalogKind,
        _: &Location,
        _: &AwsOptions,
    ) -> sluice::Result<Option<Arc<dyn Catalog>>> {
        Ok(None)
    }

    async fn engine(_: Pipeline, _: Option<Sources<'_>>) -> sluice::Result<Option<Engine>> {
        Ok(None)
    }
}

impl Parts for Transformer {
    async fn engine(
        pipeline: Pipeline,
        sources: Option<Sources<'_>>,
    ) -> sluice::Result<Option<Engine>> {
        let sources = sources.expect("the transform's parts open a catalog");
        Engine::load(pipeline, sources, true).await.map(Some)
    }
}

impl Parts for Compactor {
    async fn engine(_: Pipeline, _: Option<Sources<'_>>) -> sluice::Result<Option<Engine>> {
        Ok(None)
    }
}

impl Parts for Committer {
    async fn engine(pipeline: Pipeline, _: Option<Sources<'_>>) -> sluice::Result<Option<Engine>> {
        Ok(Some(Engine::unplanned(pipeline)))
    }
}

/// A function's settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The pipeline file: a path or an `s3://` URL (`SLUICE_CONFIG`).
    pub config: String,
    /// Overrides `[lake] root` (`SLUICE_LAKE`).
    pub lake: Option<String>,
    /// Overrides `[input] root` (`SLUICE_INPUT`).
    pub input: Option<String>,
    /// Where the planner sends chunk tasks (`SLUICE_CHUNK_QUEUE_URL`). Without
    /// it, the planner writes a manifest for every event.
    pub chunk_queue_url: Option<String>,
    /// Target chunk size in bytes (`SLUICE_CHUNK_SIZE`, e.g. `128MiB`).
    pub chunk_size: u64,
    /// Tasks per page of a prefix's plan (`SLUICE_PLAN_PAGE`; 0 is the
    /// default, [`crate::planner::DEFAULT_PAGE_TASKS`]).
    pub plan_page: usize,
    /// Overrides `[lake] catalog`: register tables in this Glue database
    /// (`SLUICE_GLUE_DATABASE`, which the deployment template sets).
    pub glue_database: Option<String>,
    /// Where the catalog function queues partitions worth compacting
    /// (`SLUICE_COMPACTION_QUEUE_URL`); without it, it queues none.
    pub compaction_queue_url: Option<String>,
    /// Compaction settings: `SLUICE_COMPACT_TARGET_SIZE` (256MiB),
    /// `SLUICE_COMPACT_MIN_FILES` (4), `SLUICE_COMPACT_MIN_AGE` (15m).
    pub compact: CompactOptions,
    /// How to reach AWS (from the environment in the functions; explicit in tests).
    pub aws: AwsOptions,
}

impl Settings {
    /// Read the settings from the environment. Only `main` calls this.
    pub fn from_env() -> anyhow::Result<Settings> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let config = var("SLUICE_CONFIG").ok_or_else(|| {
            anyhow::anyhow!(
                "SLUICE_CONFIG is not set: give the pipeline file as a path or an s3:// URL"
            )
        })?;
        let chunk_size = match var("SLUICE_CHUNK_SIZE") {
            None => DEFAULT_CHUNK_SIZE,
            Some(s) => s
                .parse::<bytesize::ByteSize>()
                .map_err(|e| anyhow::anyhow!("SLUICE_CHUNK_SIZE={s:?}: {e}"))?
                .as_u64()
                .max(1),
        };
        let plan_page = match var("SLUICE_PLAN_PAGE") {
            None => 0,
            Some(s) => s.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                anyhow::anyhow!("SLUICE_PLAN_PAGE={s:?}: not a positive number of tasks")
            })?,
        };
        let mut compact = CompactOptions::default();
        if let Some(s) = var("SLUICE_COMPACT_TARGET_SIZE") {
            compact.target_size = s
                .parse::<bytesize::ByteSize>()
                .map_err(|e| anyhow::anyhow!("SLUICE_COMPACT_TARGET_SIZE={s:?}: {e}"))?
                .as_u64()
                .max(1);
        }
        if let Some(s) = var("SLUICE_COMPACT_MIN_FILES") {
            compact.min_files = s
                .parse()
                .map_err(|e| anyhow::anyhow!("SLUICE_COMPACT_MIN_FILES={s:?}: {e}"))?;
        }
        if let Some(s) = var("SLUICE_COMPACT_MIN_AGE") {
            compact.min_age = humantime::parse_duration(&s)
                .map_err(|e| anyhow::anyhow!("SLUICE_COMPACT_MIN_AGE={s:?}: {e}"))?;
        }
        Ok(Settings {
            config,
            compaction_queue_url: var("SLUICE_COMPACTION_QUEUE_URL"),
            compact,
            lake: var("SLUICE_LAKE"),
            input: var("SLUICE_INPUT"),
            chunk_queue_url: var("SLUICE_CHUNK_QUEUE_URL"),
            chunk_size,
            plan_page,
            glue_database: var("SLUICE_GLUE_DATABASE"),
            aws: AwsOptions::default(),
        })
    }
}

/// Everything a handler needs, built once per container.
pub struct Deps {
    /// The pipeline as read at start.
    pipeline: Arc<Pipeline>,
    /// The engine, if the function's [`Parts`] have one; replaced between
    /// chunks when a lookup changes (see [`Deps::fresh_engine`]).
    engine: Option<std::sync::RwLock<Arc<Engine>>>,
    /// Where raw files are (`[input] root`): events about other places are skipped.
    pub input: Location,
    /// The lake (warehouse) root.
    pub lake: Location,
    /// The catalog, if the function's [`Parts`] have one.
    catalog: Option<Arc<dyn Catalog>>,
    pub sqs: aws_sdk_sqs::Client,
    pub chunk_queue_url: Option<String>,
    pub chunk_size: u64,
    /// Tasks per page of a prefix's plan.
    pub plan_page: usize,
    pub read: ReadOptions,
    pub compaction_queue_url: Option<String>,
    pub compact: CompactOptions,
    pub aws: AwsOptions,
}

impl Deps {
    /// Load the pipeline and open what it names that the function's `parts`
    /// use.
    pub async fn new<P: Parts>(settings: &Settings, _parts: P) -> sluice::Result<Deps> {
        let text = read_text(&settings.config, &settings.aws).await?;
        let mut pipeline = Pipeline::from_toml(&text).map_err(|e| {
            sluice::Error::Config(format!(
                "{}: {}",
                settings.config,
                e.to_string().trim_start_matches("config: ")
            ))
        })?;
        if let Some(l) = &settings.lake {
            pipeline.lake_root = l.clone();
        }
        if let Some(i) = &settings.input {
            pipeline.input_root = Some(i.clone());
        }
        if let Some(database) = &settings.glue_database {
            if !database
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(sluice::Error::Config(format!(
                    "SLUICE_GLUE_DATABASE={database:?} is not a valid Glue database name \
                     (lower-case letters, digits and _)"
                )));
            }
            pipeline.catalog = CatalogKind::Glue {
                database: database.clone(),
                create_database: false,
            };
        }
        let lake = Location::open_with(&pipeline.lake_root, true, &settings.aws)?;
        let reads_files = pipeline
            .tables
            .iter()
            .any(|t| !matches!(t.source, SourceMatch::Stream(_)));
        let input = match &pipeline.input_root {
            Some(root) => Location::open_with(root, false, &settings.aws)?,
            // A pipeline of stream tables only: no file is ever read.
            None if !reads_files => lake.clone(),
            None => {
                return Err(sluice::Error::Config(format!(
                    "{}: [input] root is required by the functions: the s3:// prefix raw files \
                     arrive under (or set SLUICE_INPUT)",
                    settings.config
                )));
            }
        };
        let catalog = P::catalog(&pipeline.catalog, &lake, &settings.aws).await?;
        let sqs = aws_sdk_sqs::Client::new(&settings.aws.sdk_config().await);
        let sources = catalog.as_ref().map(|catalog| Sources {
            lake: &lake,
            catalog: catalog.as_ref(),
            aws: &settings.aws,
        });
        let read = Arc::new(pipeline.clone());
        let engine = P::engine(pipeline, sources).await?;
        Ok(Deps {
            pipeline: read,
            engine: engine.map(|e| std::sync::RwLock::new(Arc::new(e))),
            aws: settings.aws.clone(),
            input,
            lake,
            catalog,
            sqs,
            chunk_queue_url: settings.chunk_queue_url.clone(),
            chunk_size: settings.chunk_size,
            plan_page: match settings.plan_page {
                0 => crate::planner::DEFAULT_PAGE_TASKS,
                n => n,
            },
            read: ReadOptions::default(),
            compaction_queue_url: settings.compaction_queue_url.clone(),
            compact: settings.compact.clone(),
        })
    }

    /// The pipeline as read at start.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The engine as it stands. Only for functions whose [`Parts`] have one
    /// (not the planner's): anything else is a bug in the function's code.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine
            .as_ref()
            .expect("this function's parts have no engine")
            .read()
            .expect("not poisoned")
            .clone()
    }

    /// The catalog. Only for functions whose [`Parts`] open one (not the
    /// planner's): anything else is a bug in the function's code.
    pub fn catalog(&self) -> &dyn Catalog {
        self.catalog
            .as_deref()
            .expect("this function's parts have no catalog")
    }

    /// The engine for the next chunk: with every lookup whose source changed
    /// since it was read (each asked at most every `refresh`) read again.
    pub async fn fresh_engine(&self) -> sluice::Result<Arc<Engine>> {
        let engine = self.engine();
        if engine.lookups.is_empty() {
            return Ok(engine);
        }
        let sources = Sources {
            lake: &self.lake,
            catalog: self.catalog(),
            aws: &self.aws,
        };
        match engine.refreshed(sources).await? {
            None => Ok(engine),
            Some(new) => {
                let new = Arc::new(new);
                let slot = self.engine.as_ref().expect("it gave the engine above");
                *slot.write().expect("not poisoned") = new.clone();
                Ok(new)
            }
        }
    }
}
