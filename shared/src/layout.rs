//! The lake's own folders, under its root, beside the tables' data. Every
//! `_sluice/...` (and `_quarantine`) name is here and nowhere else; readers
//! that list a table's folder never see them (Hive and Spark skip names that
//! start with `_`).
//!
//! ```text
//! <lake>/<table>/<k>=<v>/.../part-....parquet   data files
//! <lake>/_quarantine/<table>/<chunk id>.jsonl   rejected records
//! <lake>/_sluice/commits/<table>/...json        one commit record a chunk
//! <lake>/_sluice/catalog/                       the local catalog
//! <lake>/_sluice/compactions/                   compaction intents and leases
//! <lake>/_sluice/schemas/<table>.json           columns gained by evolution
//! <lake>/_sluice/sources/<table>/<source>/...   the ledger of source versions
//! <lake>/_sluice/streams/<table>/<shard>.json  how far a stream shard is loaded
//! <lake>/_sluice/manifests/                     chunk-task manifests of backfills
//! <lake>/_sluice/committers/<table>.json        the lease of a Delta table's committer
//! <lake>/_sluice/cdc-staged/<table>/...         a CDC table's staged changes
//! <lake>/_sluice/cdc-deleted/<table>/...        keys a CDC table deleted, with positions
//! <lake>/<table>/_delta_log/                    a Delta table's log
//! ```

/// Rejected records: `<dir>/<table>/<chunk id>.jsonl`.
pub const QUARANTINE_DIR: &str = "_quarantine";

/// Commit records: `<dir>/<table>/<chunk id>.json`.
pub const COMMITS_DIR: &str = "_sluice/commits";

/// The local catalog's table and partition definitions.
pub const CATALOG_DIR: &str = "_sluice/catalog";

/// Compaction intents and leases.
pub const COMPACTIONS_DIR: &str = "_sluice/compactions";

/// The columns a table gained by evolution: `<dir>/<table>.json`.
pub const SCHEMAS_DIR: &str = "_sluice/schemas";

/// The ledger of which versions of a source were loaded.
pub const SOURCES_DIR: &str = "_sluice/sources";

/// Leases of Delta tables' committers in AWS: `<dir>/<table>.json`.
pub const COMMITTERS_DIR: &str = "_sluice/committers";

/// The planner's manifests of chunk tasks, for a Distributed Map.
pub const MANIFESTS_DIR: &str = "_sluice/manifests";

/// A CDC table's staged changes (when it keeps no change table): `<dir>/<table>/`.
pub const CDC_STAGED_DIR: &str = "_sluice/cdc-staged";

/// The keys a CDC table deleted, with their positions: `<dir>/<table>/<batch>.parquet`.
pub const CDC_DELETED_DIR: &str = "_sluice/cdc-deleted";

/// How far each shard (Kinesis) or partition (Kafka) of a table's stream is
/// loaded: `<dir>/<table>/<stream and shard hash>.json`.
pub const STREAMS_DIR: &str = "_sluice/streams";
