//! The planner: an event about raw objects in, one chunk task per chunk out.
//!
//! Events from S3 (notifications), EventBridge and SQS send their tasks to
//! the chunk queue, ten per `SendMessageBatch`. A direct payload
//! (`{"bucket", "key"}`, `{"bucket", "prefix"}`, `{"url"}`: what a Step
//! Functions backfill sends) gets a manifest of its tasks in the lake, under
//! `_sluice/manifests/`: a JSON array, one task per line, which a Distributed
//! Map's `ItemReader` reads with `InputType: JSON`; the answer says where. An object that matches no table, is
//! hidden, or lies outside the input root is skipped and logged, not an error.
//!
//! A prefix is planned in pages: the listing is read as it comes (1,000 keys
//! a call), the objects of a page planned [`PLAN_CONCURRENCY`] at a time, and
//! a page ends once it holds `page_tasks` tasks or has looked at as many
//! objects (`SLUICE_PLAN_PAGE`, [`DEFAULT_PAGE_TASKS`]). A direct payload
//! gets one page, one manifest, and the key to start after in `next` (`null`
//! after the last page), which the next call takes as `"after"`; tasks sent
//! to the queue go page by page within the invocation. So no invocation holds
//! more than a page, and a million objects are a hundred calls of 10,000.

use std::time::Instant;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice::event::{ObjectRef, Target, decode, sqs_messages};
use sluice::messages::{Manifest, TaskSpec};
use sluice::pipeline::{hidden, plan_object};
use sluice::read::SourceObject;
use tracing::{Instrument, info, info_span};

use crate::deps::Deps;
use crate::error::FunctionError;
use crate::metrics::{Record, Unit};

/// What the planner did with an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanResponse {
    /// Objects cut into chunks.
    pub objects: usize,
    /// Chunk tasks made.
    pub tasks: usize,
    /// Tasks sent to the chunk queue.
    pub queued: usize,
    /// The manifest, for a direct payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    /// Objects left alone, each with the reason (the first [`LISTED`]; all are logged).
    pub skipped: Vec<String>,
    /// How many objects were left alone in all.
    pub skipped_total: usize,
    /// Events that carry no work (`s3:TestEvent`, deletes), each with what it was.
    pub ignored: Vec<String>,
    /// For a prefix planned in pages: the last key this page looked at, where
    /// the next call starts (`"after"`); `null` once the listing is done.
    pub next: Option<String>,
}

use sluice::layout::MANIFESTS_DIR;

/// At most this many skipped objects are named in an answer, which must stay
/// small (a Step Functions state holds at most 256 KB).
pub const LISTED: usize = 50;

/// A page of a prefix's plan: at most this many tasks (and objects looked
/// at), unless `SLUICE_PLAN_PAGE` or the payload's `page_tasks` says
/// otherwise. 10,000 tasks are a manifest of about 5 MB, a Register call of
/// well under a minute, and a planner call of seconds.
pub const DEFAULT_PAGE_TASKS: usize = 10_000;

/// Objects of a listing planned at once (a Parquet object's footer is read
/// to cut it; a text object needs no call).
pub const PLAN_CONCURRENCY: usize = 16;

/// Where a prefix's plan starts and how big its page is: the fields a direct
/// payload may carry beside `{"bucket", "prefix"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Paging {
    /// Plan the keys after this one (the previous page's `next`).
    pub after: Option<String>,
    /// Tasks (and objects looked at) per page.
    pub page_tasks: Option<usize>,
}

impl Paging {
    /// Take the paging fields out of a direct payload (the rest is the event).
    pub fn take(event: &mut Value) -> Result<Paging, FunctionError> {
        let Some(fields) = event.as_object_mut() else {
            return Ok(Paging::default());
        };
        let mut paging = serde_json::Map::new();
        for k in ["after", "page_tasks"] {
            if let Some(v) = fields.remove(k) {
                paging.insert(k.to_string(), v);
            }
        }
        serde_json::from_value(Value::Object(paging)).map_err(|e| {
            FunctionError::permanent(format!(
                "\"after\" must be a key (or null) and \"page_tasks\" a positive number: {e}"
            ))
        })
    }
}

/// Handle one invocation.
pub async fn handle(deps: &Deps, event: Value) -> Result<Value, FunctionError> {
    let started = Instant::now();
    if let Some(messages) = sqs_messages(&event) {
        let (done, failures) = crate::for_each_message(messages, "message", |m| async move {
            let mut event = m.json()?;
            let mut paging = Paging::take(&mut event)?;
            // Page by page: only one page's tasks are ever held.
            let mut all = Planned::default();
            let mut queued = 0;
            loop {
                let planned = plan_event(deps, &event, &paging).await?;
                queued += send(deps, &planned.tasks).await?;
                all.response.objects += planned.response.objects;
                all.tasks_total += planned.tasks.len();
                all.response.skipped_total += planned.response.skipped_total;
                all.response.ignored.extend(planned.response.ignored);
                match planned.response.next {
                    Some(next) => paging.after = Some(next),
                    None => break,
                }
            }
            Ok((all, queued))
        })
        .await;
        let mut total = PlanResponse::default();
        for (_, (planned, queued)) in done {
            total.objects += planned.response.objects;
            total.tasks += planned.tasks_total;
            total.queued += queued;
            total.skipped_total += planned.response.skipped_total;
            total.ignored.extend(planned.response.ignored);
        }
        emit(&total, failures.len(), started);
        return Ok(crate::sqs_batch_response(failures));
    }
    let direct = ["bucket", "url"].iter().any(|k| event.get(k).is_some());
    let mut event = event;
    let mut paging = Paging::take(&mut event)?;
    let mut response = PlanResponse::default();
    loop {
        let planned = plan_event(deps, &event, &paging).await?;
        response.objects += planned.response.objects;
        response.tasks += planned.tasks.len();
        response.skipped_total += planned.response.skipped_total;
        for s in planned.response.skipped {
            if response.skipped.len() < LISTED {
                response.skipped.push(s);
            }
        }
        response.ignored.extend(planned.response.ignored);
        response.next = planned.response.next;
        if direct || deps.chunk_queue_url.is_none() {
            // One page, one manifest: the caller asks for the next.
            response.manifest = Some(write_manifest(deps, &planned.tasks).await?);
            break;
        }
        response.queued += send(deps, &planned.tasks).await?;
        match response.next.take() {
            Some(next) => paging.after = Some(next),
            None => break,
        }
    }
    emit(&response, 0, started);
    Ok(crate::answer("planned", &response))
}

fn emit(r: &PlanResponse, failed: usize, started: Instant) {
    Record::new("planner")
        .metric("Objects", r.objects as f64, Unit::Count)
        .metric("Tasks", r.tasks as f64, Unit::Count)
        .metric("Skipped", r.skipped_total as f64, Unit::Count)
        .metric("MessagesFailed", failed as f64, Unit::Count)
        .duration(started)
        .emit();
}

#[derive(Default)]
struct Planned {
    response: PlanResponse,
    tasks: Vec<TaskSpec>,
    /// Tasks of earlier pages, already sent.
    tasks_total: usize,
}

/// What planning one object came to.
enum Outcome {
    Skipped(String),
    Tasks(Vec<TaskSpec>),
}

impl Planned {
    fn add(&mut self, url: &str, outcome: Outcome) {
        match outcome {
            Outcome::Skipped(why) => {
                self.response.skipped_total += 1;
                if self.response.skipped.len() < LISTED {
                    self.response.skipped.push(format!("{url}: {why}"));
                }
            }
            Outcome::Tasks(tasks) => {
                self.response.objects += 1;
                self.tasks.extend(tasks);
            }
        }
    }
}

/// Plan every object an (unwrapped) event names; a prefix, one page of it.
async fn plan_event(deps: &Deps, event: &Value, paging: &Paging) -> Result<Planned, FunctionError> {
    let targets = decode(event).map_err(|e| FunctionError::permanent(e.to_string()))?;
    let page = paging.page_tasks.unwrap_or(deps.plan_page).max(1);
    let mut planned = Planned::default();
    for target in targets {
        match target {
            Target::Ignored(what) => {
                info!(event = %what, "ignored: carries no work");
                planned.response.ignored.push(what);
            }
            Target::Object(o) => {
                let outcome = plan_one(deps, &o, None).await?;
                planned.add(&o.url(), outcome);
            }
            Target::Prefix { bucket, prefix } => {
                let url = format!("s3://{bucket}/{prefix}");
                let Some(relative) = under_input(deps, &url).or_else(|| {
                    // The input root itself, written without its trailing `/`.
                    (url.trim_end_matches('/') == deps.input.url).then_some("")
                }) else {
                    return Err(FunctionError::permanent(format!(
                        "{url} is not under the input root {}",
                        deps.input.url
                    )));
                };
                // A folder under the input root (the root itself when empty).
                let relative = relative.trim_end_matches('/');
                let prefix = if relative.is_empty() {
                    deps.input.prefix.clone()
                } else {
                    deps.input.child(relative)?
                };
                let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
                let listing = match &paging.after {
                    Some(after) if !after.is_empty() => {
                        let after = Path::parse(after).map_err(|e| {
                            FunctionError::permanent(format!(
                                "\"after\": {after:?} is not a key: {e}"
                            ))
                        })?;
                        deps.input.store.list_with_offset(prefix.as_ref(), &after)
                    }
                    _ => deps.input.store.list(prefix.as_ref()),
                };
                // The listing gives each object's size, ETag and time: no
                // HEAD per object (a backfill lists 10^5-10^6 of them).
                let mut outcomes = listing
                    .map_err(|e| {
                        // The store's error itself, so that a throttled or
                        // failed listing is retried.
                        FunctionError::from(sluice::Error::read(format!("{url} (listing)"), e))
                    })
                    .map_ok(|meta| {
                        let o = ObjectRef {
                            bucket: bucket.clone(),
                            key: meta.location.as_ref().to_string(),
                            size: Some(meta.size),
                            e_tag: meta.e_tag.clone(),
                            version: meta.version.clone(),
                            sequencer: None,
                        };
                        async move {
                            let outcome = plan_one(deps, &o, Some(meta)).await?;
                            Ok::<_, FunctionError>((o, outcome))
                        }
                    })
                    .try_buffered(PLAN_CONCURRENCY);
                let mut looked_at = 0;
                while let Some((o, outcome)) = outcomes.try_next().await? {
                    planned.add(&o.url(), outcome);
                    looked_at += 1;
                    if planned.tasks.len() >= page || looked_at >= page {
                        // What is in flight beyond this key is planned again
                        // by the next page.
                        planned.response.next = Some(o.key);
                        break;
                    }
                }
            }
        }
    }
    Ok(planned)
}

/// The part of `url` under the input root, if it is under it.
fn under_input<'a>(deps: &Deps, url: &'a str) -> Option<&'a str> {
    url.strip_prefix(deps.input.url.as_str())
        .and_then(|r| r.strip_prefix('/'))
}

/// Plan one object: `listed` is what a listing said of it (then it is not
/// asked again); an event's object is asked with a HEAD, for the version
/// that is there now.
async fn plan_one(
    deps: &Deps,
    o: &ObjectRef,
    listed: Option<object_store::ObjectMeta>,
) -> Result<Outcome, FunctionError> {
    let url = o.url();
    let span = info_span!("object", object = %url);
    async {
        let skip = |why: String| {
            info!(reason = %why, "skipped");
            Ok(Outcome::Skipped(why))
        };
        let Some(relative) = under_input(deps, &url).filter(|r| !r.is_empty()) else {
            return skip(format!("not under the input root {}", deps.input.url));
        };
        if hidden(relative) {
            return skip("hidden (a path segment starts with . or _)".into());
        }
        let Some(table) = deps.pipeline().table_for(relative) else {
            return skip("matches no table's source".into());
        };
        let path = deps.input.child(relative)?;
        let asked = match listed {
            Some(meta) => Ok(meta),
            None => deps.input.store.head(&path).await,
        };
        let meta = match asked {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => {
                return skip("no longer exists".into());
            }
            Err(e) => return Err(FunctionError::from(sluice::Error::Store(e))),
        };
        let sequencer = event_sequencer(o, &meta);
        let object = SourceObject {
            store: deps.input.store.clone(),
            path,
            url: url.clone(),
            size: meta.size,
            e_tag: meta.e_tag,
            version: meta.version,
            modified: Some(sluice::sources::timestamp(meta.last_modified)),
            sequencer,
        };
        let tasks = plan_object(table, &object, deps.chunk_size).await?;
        let n = tasks.len();
        info!(table = %table.name, bytes = object.size, chunks = n, "planned object");
        Ok(Outcome::Tasks(
            tasks.iter().map(|t| TaskSpec::of(t, n)).collect(),
        ))
    }
    .instrument(span)
    .await
}

/// The event's sequencer, where the event is about the version the HEAD
/// found (the same ETag, and version id where both have one): an event of
/// an earlier write says nothing of when this version was written.
fn event_sequencer(o: &ObjectRef, head: &object_store::ObjectMeta) -> Option<String> {
    let same_etag = matches!((&o.e_tag, &head.e_tag),
        (Some(a), Some(b)) if a.trim_matches('"') == b.trim_matches('"'));
    let same_version = match (&o.version, &head.version) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    o.sequencer.clone().filter(|_| same_etag && same_version)
}

/// Send tasks to the chunk queue, ten per call, retrying entries SQS failed.
async fn send(deps: &Deps, tasks: &[TaskSpec]) -> Result<usize, FunctionError> {
    if tasks.is_empty() {
        return Ok(0);
    }
    let Some(queue) = &deps.chunk_queue_url else {
        return Err(FunctionError::permanent(
            "SLUICE_CHUNK_QUEUE_URL is not set: the planner has no queue to send tasks to",
        ));
    };
    let bodies: Vec<String> = tasks
        .iter()
        .map(|t| serde_json::to_string(t).expect("serializes"))
        .collect();
    crate::send_messages(&deps.sqs, queue, &bodies, None).await
}

/// Write the tasks under `_sluice/manifests/`, named by their content: a
/// JSON array with one task per line.
async fn write_manifest(deps: &Deps, tasks: &[TaskSpec]) -> Result<Manifest, FunctionError> {
    let mut body = b"[".to_vec();
    for (i, t) in tasks.iter().enumerate() {
        body.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        serde_json::to_writer(&mut body, t).expect("serializes");
    }
    body.extend_from_slice(b"\n]\n");
    let id = hex::encode(&Sha256::digest(&body)[..12]);
    let path = deps.lake.child(&format!("{MANIFESTS_DIR}/{id}.json"))?;
    deps.lake
        .store
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| FunctionError::from(sluice::Error::write(deps.lake.url_of(&path), e)))?;
    let url = deps.lake.url_of(&path);
    let bucket = url
        .strip_prefix("s3://")
        .and_then(|r| r.split_once('/'))
        .map(|(b, _)| b.to_string());
    Ok(Manifest {
        key: path.as_ref().to_string(),
        bucket,
        url,
        tasks: tasks.len(),
    })
}
