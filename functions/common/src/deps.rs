//! What a function reads once at start-up ([`Settings`], from the
//! environment) and builds once ([`Deps`]: the engine, the stores, the
//! catalog and the SQS client), then shares across invocations.

use std::sync::Arc;

use sluice::catalog::Catalog;
use sluice::compact::CompactOptions;
use sluice::config::{CatalogKind, Pipeline, SourceMatch};
use sluice::lookup::Sources;
use sluice::pipeline::Engine;
use sluice::plan::DEFAULT_CHUNK_SIZE;
use sluice::read::ReadOptions;
use sluice::store::{AwsOptions, Location, read_text};

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
    /// A function that never transforms (planner, catalog, compactor): it
    /// matches files to tables and commits what the transforms wrote, so it
    /// reads only the pipeline file, neither planning the tables' SQL nor
    /// reading their `[[lookups]]` (and needs no access to where they are).
    pub pipeline_only: bool,
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
            pipeline_only: false,
        })
    }
}

/// Everything a handler needs, built once per container.
pub struct Deps {
    /// The engine; replaced between chunks when a lookup changes (see [`Deps::engine`]).
    engine: std::sync::RwLock<Arc<Engine>>,
    /// Where raw files are (`[input] root`): events about other places are skipped.
    pub input: Location,
    /// The lake (warehouse) root.
    pub lake: Location,
    pub catalog: Arc<dyn Catalog>,
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
    /// Load the pipeline and open everything it names.
    pub async fn new(settings: &Settings) -> sluice::Result<Deps> {
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
        let catalog = sluice::connect::catalog(&pipeline.catalog, &lake, &settings.aws).await?;
        let sqs = aws_sdk_sqs::Client::new(&settings.aws.sdk_config().await);
        let sources = Sources {
            lake: &lake,
            catalog: catalog.as_ref(),
            aws: &settings.aws,
        };
        let engine = if settings.pipeline_only {
            Engine::unplanned(pipeline)
        } else {
            Engine::load(pipeline, sources, true).await?
        };
        Ok(Deps {
            engine: std::sync::RwLock::new(Arc::new(engine)),
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

    /// The engine as it stands.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.read().expect("not poisoned").clone()
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
            catalog: self.catalog.as_ref(),
            aws: &self.aws,
        };
        match engine.refreshed(sources).await? {
            None => Ok(engine),
            Some(new) => {
                let new = Arc::new(new);
                *self.engine.write().expect("not poisoned") = new.clone();
                Ok(new)
            }
        }
    }
}
