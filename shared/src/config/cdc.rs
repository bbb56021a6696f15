//! `[tables.cdc]`: change data capture, as written and as checked: the
//! envelope (Debezium, AWS DMS), the key, the order, and the columns a staged
//! change carries.

use super::*;
use crate::error::{Error, Result};
use serde::Deserialize;

/// `[tables.cdc]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdcConfig {
    /// `debezium` (JSON change events) or `dms` (AWS DMS CSV or Parquet files).
    pub envelope: String,
    /// The source table's primary key columns (declared in `[tables.schema]`).
    pub key: Vec<String>,
    /// DMS: the column that orders changes (DMS `TimestampColumnName`), read
    /// before the declared columns in files without a header.
    pub order_by: Option<String>,
    /// Also append every change to `<name>_changes`.
    #[serde(default)]
    pub keep_changes: bool,
    /// How long a deleted key is remembered, so that an older change
    /// arriving late cannot bring the row back (default `7d`).
    pub remember_deletes: Option<String>,
}

/// Which change-event format a CDC table reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// Debezium JSON change events, with or without the `schema`/`payload` wrapper.
    Debezium,
    /// AWS DMS files: an `Op` column (`I`, `U`, `D`) before the row's columns.
    Dms,
}

/// A table fed by change events: rows are merged by key into a Delta table.
#[derive(Debug, Clone, PartialEq)]
pub struct Cdc {
    pub envelope: Envelope,
    /// Primary key columns.
    pub key: Vec<String>,
    /// DMS: the column ordering changes.
    pub order_by: Option<String>,
    /// Whether the order column is one of the declared columns (kept in the table).
    pub order_by_declared: bool,
    pub keep_changes: bool,
    /// How long deleted keys are remembered.
    pub remember_deletes: std::time::Duration,
    /// The declared columns: what the table holds, besides the position.
    pub declared: Vec<Column>,
}

/// The change's operation in a CDC table's staged rows and change history:
/// `c` (insert), `u` (update), `d` (delete), `r` (snapshot read), as Debezium names them.
pub const CDC_OP: &str = "_op";

/// The change's place in the source's order, as text that sorts in that order.
pub const CDC_POSITION: &str = "_sluice_position";

/// When the change's file arrived (the object's last-modified time).
pub const CDC_ARRIVED: &str = "_sluice_arrived_at";

/// Debezium, internal to reading: the envelope's source position.
pub const CDC_SOURCE_POSITION: &str = "_sluice_source_position";

/// DMS: the operation column of the files.
pub const DMS_OP: &str = "Op";

impl Cdc {
    /// The table of every change, when `keep_changes` is on.
    pub fn changes_table(table: &str) -> String {
        format!("{table}_changes")
    }

    /// Where a chunk's staged changes are written, relative to the lake: the
    /// change table's folder, or a private one.
    pub fn staging_folder(&self, table: &str) -> String {
        if self.keep_changes {
            Cdc::changes_table(table)
        } else {
            format!("{}/{table}", crate::layout::CDC_STAGED_DIR)
        }
    }

    /// The columns of staged changes (and of the change table).
    pub fn staged_columns(&self) -> Vec<Column> {
        let mut c = self.declared.clone();
        c.push(Column {
            name: CDC_OP.into(),
            ty: ColumnType::String,
        });
        c.push(Column {
            name: CDC_POSITION.into(),
            ty: ColumnType::String,
        });
        c.push(Column {
            name: CDC_ARRIVED.into(),
            ty: ColumnType::Timestamp,
        });
        c
    }

    /// The columns of the merged table: the declared ones and the position.
    pub fn table_columns(&self) -> Vec<Column> {
        let mut c = self.declared.clone();
        c.push(Column {
            name: CDC_POSITION.into(),
            ty: ColumnType::String,
        });
        c
    }
}

/// `[tables.cdc]`, checked; `columns` becomes the reader's columns: for
/// Debezium the declared ones then the envelope's operation and position;
/// for DMS `Op`, the order column (unless declared), then the declared ones,
/// which is the column order of DMS files without a header.
/// What a CDC table must be: a Delta table with declared columns, no SQL,
/// no partitions, no column of the names it keeps, keys that are columns
/// and can be keys, a source format its envelope writes.
fn check_cdc(
    n: Option<&str>,
    c: &CdcConfig,
    envelope: Envelope,
    (sql, partition_by): (Option<&str>, &[String]),
    format: Format,
    table_format: TableFormat,
    columns: &[Column],
) -> Result<()> {
    if table_format != TableFormat::Delta {
        return Err(Error::config(
            n,
            "cdc",
            "a CDC table is merged by key, which needs a Delta table: set table_format = \"delta\"",
        ));
    }
    if sql.is_some_and(|s| !s.trim().is_empty()) {
        return Err(Error::config(
            n,
            "sql",
            "a CDC table holds the source table's rows as they are; it takes no sql",
        ));
    }
    if columns.is_empty() {
        return Err(Error::config(
            n,
            "schema",
            "a CDC table needs its columns declared in [tables.schema]",
        ));
    }
    if c.key.is_empty() {
        return Err(Error::config(n, "cdc.key", "names no column"));
    }
    for k in &c.key {
        let Some(col) = columns.iter().find(|col| &col.name == k) else {
            return Err(Error::config(
                n,
                "cdc.key",
                format!("{k:?} is not a column of [tables.schema]"),
            ));
        };
        if matches!(col.ty, ColumnType::Json | ColumnType::Float64) {
            return Err(Error::config(
                n,
                "cdc.key",
                format!("{k:?} is a float64 or json column, which cannot be a key"),
            ));
        }
    }
    if !partition_by.is_empty() {
        return Err(Error::config(
            n,
            "partition_by",
            "a CDC table is not partitioned (its merge rewrites files by key range)",
        ));
    }
    for col in columns.iter() {
        if col.name.starts_with("_sluice_") || col.name == CDC_OP {
            return Err(Error::config(
                n,
                "schema",
                format!("{:?} is a name the CDC table keeps for itself", col.name),
            ));
        }
    }
    match (envelope, format) {
        (Envelope::Debezium, Format::JsonLines)
        | (Envelope::Dms, Format::Csv | Format::Parquet) => {}
        (Envelope::Debezium, _) => {
            return Err(Error::config(
                n,
                "format",
                "Debezium change events are JSON: use format = \"jsonl\"",
            ));
        }
        (Envelope::Dms, _) => {
            return Err(Error::config(
                n,
                "format",
                "AWS DMS writes CSV or Parquet: use format = \"csv\" or \"parquet\"",
            ));
        }
    }
    if c.order_by.is_some() && envelope == Envelope::Debezium {
        return Err(Error::config(
            n,
            "cdc.order_by",
            "Debezium changes are ordered by their source position; order_by is for dms",
        ));
    }
    Ok(())
}

pub(super) fn parse_cdc(
    n: Option<&str>,
    c: &CdcConfig,
    (sql, partition_by): (Option<&str>, &[String]),
    format: Format,
    table_format: TableFormat,
    columns: &mut Vec<Column>,
) -> Result<Cdc> {
    let envelope = match c.envelope.trim().to_ascii_lowercase().as_str() {
        "debezium" => Envelope::Debezium,
        "dms" => Envelope::Dms,
        other => {
            return Err(Error::config(
                n,
                "cdc.envelope",
                format!("{other:?} is not a change envelope; use \"debezium\" or \"dms\""),
            ));
        }
    };
    check_cdc(
        n,
        c,
        envelope,
        (sql, partition_by),
        format,
        table_format,
        columns,
    )?;
    let remember_deletes = match &c.remember_deletes {
        None => std::time::Duration::from_secs(7 * 24 * 3600),
        Some(text) => humantime::parse_duration(text).map_err(|e| {
            Error::config(
                n,
                "cdc.remember_deletes",
                format!("{text:?}: {e} (write e.g. \"7d\")"),
            )
        })?,
    };
    let declared = columns.clone();
    let order_by_declared = c
        .order_by
        .as_ref()
        .is_some_and(|o| declared.iter().any(|col| &col.name == o));
    let string = |name: &str| Column {
        name: name.to_string(),
        ty: ColumnType::String,
    };
    match envelope {
        Envelope::Debezium => {
            columns.push(string(CDC_OP));
            columns.push(string(CDC_SOURCE_POSITION));
        }
        Envelope::Dms => {
            let mut reader = vec![string(DMS_OP)];
            if let Some(o) = &c.order_by
                && !order_by_declared
            {
                reader.push(string(o));
            }
            reader.append(columns);
            *columns = reader;
        }
    }
    Ok(Cdc {
        envelope,
        key: c.key.clone(),
        order_by: c.order_by.clone(),
        order_by_declared,
        keep_changes: c.keep_changes,
        remember_deletes,
        declared,
    })
}

/// The checks every change passes: it has its key, and (DMS) a known operation.
pub(super) fn cdc_rules(c: &Cdc, columns: &[Column]) -> Vec<Rule> {
    let index = |name: &str| columns.iter().position(|col| col.name == name);
    let mut rules: Vec<Rule> = c
        .key
        .iter()
        .filter_map(|k| {
            Some(Rule {
                name: format!("cdc.key.{k}"),
                column: index(k)?,
                check: Check::Required,
            })
        })
        .collect();
    if c.envelope == Envelope::Dms
        && let Some(op) = index(DMS_OP)
    {
        rules.push(Rule {
            name: "cdc.op".into(),
            column: op,
            check: Check::Accepted(vec!["I".into(), "U".into(), "D".into()]),
        });
    }
    rules
}
