//! `[tables.contract]` and `[[tables.rules]]`: what a table does with unknown
//! fields and wrong types, and the quality rules its rows are checked
//! against.

use super::*;
use crate::error::{Error, Result};
use serde::Deserialize;

/// `[tables.contract]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContractConfig {
    /// `discard_value` (default: drop the field, count it), `freeze` (reject
    /// the record) or `evolve` (add a nullable column to the table).
    pub unknown_fields: Option<String>,
    /// `freeze` (default: reject the record) or `discard_value` (null the value, count it).
    pub wrong_type: Option<String>,
}

/// `[[tables.rules]]`: one check on one column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule's name in quarantine reasons (default `<column>.<check>`).
    pub name: Option<String>,
    /// A declared column.
    pub column: String,
    /// The value must not be null or missing.
    #[serde(default)]
    pub required: bool,
    /// The value (as text) must be one of these.
    pub accepted: Option<Vec<String>>,
    /// Inclusive bounds of a numeric column.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// A regular expression a string column's value must match (anchor it with ^…$ for a whole match).
    pub pattern: Option<String>,
    /// No two rows of one chunk may have the same value.
    #[serde(default)]
    pub unique: bool,
}

pub(super) fn default_max_rejected_ratio() -> f64 {
    0.1
}

/// What to do with a field the schema does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownFields {
    /// Drop the value, count it.
    DiscardValue,
    /// Reject the record.
    Freeze,
    /// Add a nullable column (type inferred from the value) to the table.
    Evolve,
}

/// What to do with a value that does not fit its column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrongType {
    /// Reject the record.
    Freeze,
    /// Null the value, count it.
    DiscardValue,
}

/// A table's data contract, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contract {
    pub unknown_fields: UnknownFields,
    pub wrong_type: WrongType,
}

/// The check of a quality rule.
#[derive(Debug, Clone)]
pub enum Check {
    Required,
    Accepted(Vec<String>),
    Range { min: Option<f64>, max: Option<f64> },
    Pattern(regex::Regex),
    Unique,
}

/// A quality rule, checked: a name, the index of a declared column, and a check.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub column: usize,
    pub check: Check,
}

pub(super) fn parse_contract(table: Option<&str>, c: &ContractConfig) -> Result<Contract> {
    let mut contract = Contract::default();
    if let Some(u) = &c.unknown_fields {
        contract.unknown_fields = match u.trim() {
            "discard_value" => UnknownFields::DiscardValue,
            "freeze" => UnknownFields::Freeze,
            "evolve" => UnknownFields::Evolve,
            other => {
                return Err(Error::config(
                    table,
                    "contract.unknown_fields",
                    format!("{other:?}: use discard_value, freeze or evolve"),
                ));
            }
        };
    }
    if let Some(w) = &c.wrong_type {
        contract.wrong_type = match w.trim() {
            "freeze" => WrongType::Freeze,
            "discard_value" => WrongType::DiscardValue,
            other => {
                return Err(Error::config(
                    table,
                    "contract.wrong_type",
                    format!("{other:?}: use freeze or discard_value"),
                ));
            }
        };
    }
    Ok(contract)
}

pub(super) fn parse_rule(
    table: Option<&str>,
    i: usize,
    r: &RuleConfig,
    columns: &[Column],
) -> Result<Rule> {
    let key = format!("rules[{i}]");
    let column = columns
        .iter()
        .position(|c| c.name == r.column)
        .ok_or_else(|| {
            Error::config(
                table,
                &format!("{key}.column"),
                format!("{:?} is not a column of [tables.schema]", r.column),
            )
        })?;
    let ty = columns[column].ty;
    let mut checks = Vec::new();
    if r.required {
        checks.push(("required", Check::Required));
    }
    if let Some(values) = &r.accepted {
        if values.is_empty() {
            return Err(Error::config(table, &format!("{key}.accepted"), "is empty"));
        }
        checks.push(("accepted", Check::Accepted(values.clone())));
    }
    if r.min.is_some() || r.max.is_some() {
        if !matches!(
            ty,
            ColumnType::Int32 | ColumnType::Int64 | ColumnType::Float64 | ColumnType::Decimal(..)
        ) {
            return Err(Error::config(
                table,
                &format!("{key}.min"),
                format!("a range needs a numeric column; '{}' is not one", r.column),
            ));
        }
        if let (Some(lo), Some(hi)) = (r.min, r.max)
            && lo > hi
        {
            return Err(Error::config(table, &format!("{key}.min"), "is above max"));
        }
        checks.push((
            "range",
            Check::Range {
                min: r.min,
                max: r.max,
            },
        ));
    }
    if let Some(p) = &r.pattern {
        if !matches!(ty, ColumnType::String | ColumnType::Json) {
            return Err(Error::config(
                table,
                &format!("{key}.pattern"),
                format!("a pattern needs a string column; '{}' is not one", r.column),
            ));
        }
        let re = regex::Regex::new(p).map_err(|e| {
            Error::config(
                table,
                &format!("{key}.pattern"),
                format!("not a regular expression: {e}"),
            )
        })?;
        checks.push(("pattern", Check::Pattern(re)));
    }
    if r.unique {
        checks.push(("unique", Check::Unique));
    }
    if checks.len() != 1 {
        return Err(Error::config(
            table,
            &key,
            "give exactly one check per rule: required, accepted, min/max, pattern or unique",
        ));
    }
    let (what, check) = checks.pop().expect("one check");
    Ok(Rule {
        name: r
            .name
            .clone()
            .unwrap_or_else(|| format!("{}.{what}", r.column)),
        column,
        check,
    })
}
