//! Metrics as CloudWatch Embedded Metric Format: one JSON line on stdout per
//! unit of work, which CloudWatch Logs turns into metrics in the `Sluice`
//! namespace without any API call from the function.

use serde_json::{Map, Value, json};

/// CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Sluice";

/// A metric's unit.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Count,
    Bytes,
    Milliseconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF record: dimensions (`Function`, `Table`) and values. Its metrics
/// are published under every leading run of its dimensions: a record with
/// `Function` and `Table` counts under (`Function`, `Table`) and under
/// (`Function`) alone, which CloudWatch treats as two metrics; alarms and
/// dashboards over a whole function watch the second.
#[derive(Debug, Clone)]
pub struct Record {
    dimensions: Vec<(String, String)>,
    metrics: Vec<(String, f64, Unit)>,
}

impl Record {
    /// A record for `function` (planner, transform, catalog).
    pub fn new(function: &str) -> Record {
        Record {
            dimensions: vec![("Function".into(), function.into())],
            metrics: Vec::new(),
        }
    }

    /// Add a dimension (`Table`).
    pub fn dimension(mut self, name: &str, value: &str) -> Record {
        self.dimensions.push((name.into(), value.into()));
        self
    }

    /// Add a value.
    pub fn metric(mut self, name: &str, value: f64, unit: Unit) -> Record {
        self.metrics.push((name.into(), value, unit));
        self
    }

    /// Add `Duration`: milliseconds since `started`.
    pub fn duration(self, started: std::time::Instant) -> Record {
        self.metric(
            "Duration",
            started.elapsed().as_secs_f64() * 1000.0,
            Unit::Milliseconds,
        )
    }

    /// The EMF JSON document, stamped `timestamp_ms`.
    pub fn to_json(&self, timestamp_ms: i64) -> Value {
        let mut doc = Map::new();
        let names: Vec<&str> = self.dimensions.iter().map(|(k, _)| k.as_str()).collect();
        let sets: Vec<&[&str]> = (1..=names.len()).rev().map(|n| &names[..n]).collect();
        let defs: Vec<Value> = self
            .metrics
            .iter()
            .map(|(n, _, u)| json!({"Name": n, "Unit": u.name()}))
            .collect();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": sets, "Metrics": defs}]
            }),
        );
        for (k, v) in &self.dimensions {
            doc.insert(k.clone(), Value::String(v.clone()));
        }
        for (n, v, _) in &self.metrics {
            doc.insert(n.clone(), json!(v));
        }
        Value::Object(doc)
    }

    /// Print the record as one line on stdout, where Lambda sends it to CloudWatch Logs.
    pub fn emit(&self) {
        println!("{}", self.to_json(chrono::Utc::now().timestamp_millis()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_every_metric_and_dimension() {
        let doc = Record::new("transform")
            .dimension("Table", "clickstream")
            .metric("RowsIn", 10.0, Unit::Count)
            .metric("BytesIn", 2048.0, Unit::Bytes)
            .to_json(1_700_000_000_000);
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let m = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "Sluice");
        assert_eq!(
            m["Dimensions"],
            json!([["Function", "Table"], ["Function"]])
        );
        let alone = Record::new("planner").metric("Objects", 1.0, Unit::Count);
        assert_eq!(
            alone.to_json(0)["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"]])
        );
        assert_eq!(m["Metrics"][1], json!({"Name": "BytesIn", "Unit": "Bytes"}));
        assert_eq!(doc["Table"], "clickstream");
        assert_eq!(doc["RowsIn"], 10.0);
    }
}
