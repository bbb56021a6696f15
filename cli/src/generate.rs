//! Deterministic sample clickstream data, for demos, tests and benchmarks.
//! The same seed gives the same rows, as JSON Lines or as CSV.

use std::io::Write;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Event types, with weights: eight types over seven days make 56 partitions.
const EVENT_TYPES: [(&str, u32); 8] = [
    ("page_view", 40),
    ("click", 25),
    ("scroll", 12),
    ("search", 8),
    ("add_to_cart", 6),
    ("remove_from_cart", 2),
    ("checkout", 4),
    ("purchase", 3),
];
const COUNTRIES: [&str; 10] = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "ES", "NL"];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
const REFERRERS: [&str; 4] = [
    "https://www.google.com/",
    "https://news.ycombinator.com/",
    "https://t.co/x",
    "https://www.bing.com/",
];
/// 2026-11-18T00:00:00Z, the first day of generated events.
const START_MICROS: i64 = 1_794_960_000_000_000;
const SPAN_MICROS: i64 = 7 * 86_400 * 1_000_000;

/// The CSV header of generated data.
pub const CSV_HEADER: &str = "event_id,event_time,user_id,session_id,event_type,page,referrer,country,device,ip,price,properties";

/// One generated event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub event_time: String,
    pub user_id: i64,
    pub session_id: String,
    pub event_type: &'static str,
    pub page: String,
    pub referrer: Option<&'static str>,
    pub country: &'static str,
    pub device: &'static str,
    pub ip: String,
    /// Cents, for cart and purchase events.
    pub price_cents: Option<i64>,
    pub properties: String,
}

/// An endless, deterministic stream of events.
pub struct Generator {
    rng: SmallRng,
    n: u64,
    total_weight: u32,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: SmallRng::seed_from_u64(seed),
            n: 0,
            total_weight: EVENT_TYPES.iter().map(|e| e.1).sum(),
        }
    }

    pub fn next_event(&mut self) -> Event {
        let r = &mut self.rng;
        self.n += 1;
        let micros = START_MICROS + r.random_range(0..SPAN_MICROS);
        let secs = micros.div_euclid(1_000_000);
        let ms = (micros.rem_euclid(1_000_000)) / 1000;
        let t = chrono::DateTime::from_timestamp(secs, 0).expect("in range");
        let event_time = format!("{}.{ms:03}Z", t.format("%Y-%m-%dT%H:%M:%S"));
        let mut w = r.random_range(0..self.total_weight);
        let mut event_type = EVENT_TYPES[0].0;
        for (name, weight) in EVENT_TYPES {
            if w < weight {
                event_type = name;
                break;
            }
            w -= weight;
        }
        let product = r.random_range(1..5000);
        let page = match event_type {
            "search" => format!("/search?q=item+{}", r.random_range(1..300)),
            "checkout" | "purchase" => "/checkout".to_string(),
            _ if r.random_bool(0.2) => "/".to_string(),
            _ => format!("/products/{product}"),
        };
        let price_cents = matches!(event_type, "add_to_cart" | "remove_from_cart" | "purchase")
            .then(|| r.random_range(99..50_000));
        let properties = match event_type {
            "scroll" => format!(
                r#"{{"depth_pct":{},"viewport":{{"w":{},"h":{}}}}}"#,
                r.random_range(1..101),
                360 + r.random_range(0..1600),
                640 + r.random_range(0..800)
            ),
            "search" => format!(
                r#"{{"results":{},"filters":["{}","in_stock"]}}"#,
                r.random_range(0..200),
                COUNTRIES[r.random_range(0..COUNTRIES.len())]
            ),
            _ => format!(
                r#"{{"ab_test":"{}","duration_ms":{},"tags":["{}"]}}"#,
                if r.random_bool(0.5) { "A" } else { "B" },
                r.random_range(5..60_000),
                DEVICES[r.random_range(0..DEVICES.len())]
            ),
        };
        Event {
            event_id: format!("{:016x}{:08x}", r.random::<u64>(), self.n as u32),
            event_time,
            user_id: r.random_range(1..200_000),
            session_id: format!("{:012x}", r.random::<u64>() >> 16),
            event_type,
            page,
            referrer: r
                .random_bool(0.3)
                .then(|| REFERRERS[r.random_range(0..REFERRERS.len())]),
            country: COUNTRIES[r.random_range(0..COUNTRIES.len())],
            device: DEVICES[r.random_range(0..DEVICES.len())],
            ip: format!(
                "203.0.{}.{}",
                r.random_range(0..256),
                r.random_range(1..255)
            ),
            price_cents,
            properties,
        }
    }
}

fn price_text(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

impl Event {
    /// One JSON Lines record, with `properties` as a nested object.
    pub fn write_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        write!(
            out,
            r#"{{"event_id":"{}","event_time":"{}","user_id":{},"session_id":"{}","event_type":"{}","page":{},"referrer":{},"country":"{}","device":"{}","ip":"{}","price":{},"properties":{}}}"#,
            self.event_id,
            self.event_time,
            self.user_id,
            self.session_id,
            self.event_type,
            json_str(&self.page),
            self.referrer.map(json_str).unwrap_or_else(|| "null".into()),
            self.country,
            self.device,
            self.ip,
            self.price_cents
                .map(price_text)
                .unwrap_or_else(|| "null".into()),
            self.properties
        )?;
        out.write_all(b"\n")
    }

    /// One CSV record (RFC 4180 quoting), `properties` as JSON text.
    pub fn write_csv(&self, out: &mut impl Write) -> std::io::Result<()> {
        let q = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            self.event_id,
            self.event_time,
            self.user_id,
            self.session_id,
            self.event_type,
            q(&self.page),
            self.referrer.map(q).unwrap_or_default(),
            self.country,
            self.device,
            self.ip,
            self.price_cents.map(price_text).unwrap_or_default(),
            q(&self.properties)
        )
    }
}

/// Write events until `bytes` have been written; returns the number of rows.
pub fn write_events(
    generator: &mut Generator,
    csv: bool,
    bytes: u64,
    out: &mut impl Write,
) -> std::io::Result<u64> {
    let mut counter = CountingWriter { inner: out, n: 0 };
    if csv {
        writeln!(counter, "{CSV_HEADER}")?;
    }
    let mut rows = 0;
    while counter.n < bytes {
        let e = generator.next_event();
        if csv {
            e.write_csv(&mut counter)?;
        } else {
            e.write_json(&mut counter)?;
        }
        rows += 1;
    }
    Ok(rows)
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_rows_in_both_formats() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let ra = write_events(&mut Generator::new(7), false, 10_000, &mut a).unwrap();
        let rb = write_events(&mut Generator::new(7), false, 10_000, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(ra, rb);
        for line in a.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            assert!(v["properties"].is_object());
        }
        let mut c = Vec::new();
        write_events(&mut Generator::new(7), true, 10_000, &mut c).unwrap();
        assert!(c.starts_with(CSV_HEADER.as_bytes()));
        use arrow::array::Array;
        // Read back by arrow's CSV reader, every field of every row equals
        // the JSON line's (null as an empty field, properties as JSON text).
        let names: Vec<&str> = CSV_HEADER.split(',').collect();
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(
            names
                .iter()
                .map(|n| arrow::datatypes::Field::new(*n, arrow::datatypes::DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let reader = arrow::csv::ReaderBuilder::new(schema)
            .with_header(true)
            .build(std::io::Cursor::new(c))
            .unwrap();
        let json: Vec<serde_json::Value> = a
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let mut row = 0;
        for batch in reader {
            let batch = batch.unwrap();
            let columns: Vec<&arrow::array::StringArray> = (0..names.len())
                .map(|i| batch.column(i).as_any().downcast_ref().unwrap())
                .collect();
            // Both formats stop at the same byte budget: CSV rows are
            // shorter, so it holds more; the JSON lines are its first rows.
            for r in 0..batch.num_rows().min(json.len().saturating_sub(row)) {
                for (i, name) in names.iter().enumerate() {
                    let want = match &json[row][*name] {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    };
                    let got = (!columns[i].is_null(r)).then(|| columns[i].value(r).to_string());
                    let same = match (&got, &want) {
                        // JSON text may differ in spacing only.
                        (Some(g), Some(w)) if *name == "properties" => {
                            serde_json::from_str::<serde_json::Value>(g).unwrap()
                                == serde_json::from_str::<serde_json::Value>(w).unwrap()
                        }
                        // A number's text, e.g. 12.50 in CSV and 12.5 in JSON.
                        (Some(g), Some(w)) if *name == "price" => {
                            g.parse::<f64>().unwrap() == w.parse::<f64>().unwrap()
                        }
                        _ => got == want,
                    };
                    assert!(same, "row {row}, {name}: CSV {got:?}, JSON {want:?}");
                }
                row += 1;
            }
        }
        assert_eq!(row, json.len(), "the CSV has at least the JSON's rows");
    }
}
