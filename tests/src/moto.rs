//! A real S3, Glue and SQS API on 127.0.0.1 for the tests: moto's server,
//! started once per test process (`tests/moto_server.py`, with the Python the
//! test command set up) and stopped when the process ends, because the server
//! exits when its stdin (a pipe held by this process) closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use sluice::store::AwsOptions;

use crate::{python, repo_root};

/// The running server.
pub struct Moto {
    pub endpoint: String,
    port: u16,
    // Held open for the life of the process: closing it stops the server.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

/// Set by [`index_listings`]: start the server with an S3 LIST that costs
/// what S3's does (tests/moto_indexed_list.py).
static INDEXED_LISTINGS: AtomicBool = AtomicBool::new(false);

/// Have the server, when it starts, answer S3 LISTs from a sorted index of
/// each bucket's keys instead of walking the whole bucket for each one, as
/// moto does. For benchmarks of how the product's work grows with the
/// bucket; call it before the first [`moto`]. The tests keep moto as it is.
pub fn index_listings() {
    INDEXED_LISTINGS.store(true, Ordering::SeqCst);
}

/// The server of this test process, started on first use.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let script = repo_root().join("tests/moto_server.py");
        let mut child = Command::new(python())
            .arg(&script)
            .env(
                "SLUICE_MOTO_INDEXED_LIST",
                if INDEXED_LISTINGS.load(Ordering::SeqCst) { "1" } else { "0" },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} with {} ({e}): run the tests with scripts/test, which installs moto",
                    script.display(),
                    python()
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("moto prints its port");
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            panic!("moto did not start (printed {line:?}): is moto[server] installed? run scripts/test")
        });
        let stdin = child.stdin.take().expect("piped");
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            _stdin: Mutex::new(stdin),
            _child: Mutex::new(child),
        }
    })
}

impl Moto {
    /// How to reach this server from the engine and the SDKs.
    pub fn aws(&self) -> AwsOptions {
        AwsOptions {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            credentials: Some(("testing".into(), "testing".into())),
        }
    }

    /// Environment variables that point a `sluice` process at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// A name no other test of this run uses (`prefix-<pid>-<n>`), for a
    /// bucket, a queue or a Glue database (`-` becomes `_` for those).
    pub fn unique(&self, prefix: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Create a bucket (a plain `PUT /bucket`, which this server takes unsigned).
    pub fn create_bucket(&self, name: &str) {
        let response = self.request("PUT", &format!("/{name}"), "");
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "creating bucket {name}: {response}"
        );
    }

    /// A Glue database no other test of this run uses (`<prefix>_<pid>_<n>`),
    /// created as the stack creates it; its name.
    pub async fn create_database(&self, glue: &aws_sdk_glue::Client, prefix: &str) -> String {
        let database = self.unique(prefix).replace('-', "_");
        glue.create_database()
            .database_input(
                aws_sdk_glue::types::DatabaseInput::builder()
                    .name(&database)
                    .build()
                    .expect("a database input"),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating Glue database {database}: {e}"));
        database
    }

    /// One plain HTTP request to the server; the whole response.
    fn request(&self, method: &str, path: &str, body: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("moto listens");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .expect("request sent");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("response read");
        response
    }

    /// The JSON body of a request to the server's IAM gate (`tests/iam.py`).
    fn iam(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let response = self.request(method, path, body);
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.contains(" 200 "), "{method} {path}: {response}");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
    }

    /// Deploy the stack's roles: template.yaml expanded as `sam deploy`
    /// does, with these parameters (overriding its defaults) and these
    /// resources the test made itself (`{"ChunkQueue": {"Ref": url, "Arn":
    /// arn}}`). From then on each function's credentials
    /// ([`Stack::aws`]) are held to exactly its role's statements.
    pub fn deploy(&self, parameters: serde_json::Value, resources: serde_json::Value) -> Stack {
        let name = self.unique("stack");
        let ask =
            serde_json::json!({"stack": name, "parameters": parameters, "resources": resources});
        let functions = self.iam("POST", "/__iam/stack", &ask.to_string());
        Stack {
            name,
            functions,
            aws: self.aws(),
        }
    }
}

/// A deployed stack's functions, each behind its own role (see [`Moto::deploy`]).
pub struct Stack {
    pub name: String,
    /// By logical id (`CatalogFunction`): `access_key`, `memory` (MB),
    /// `timeout` (s) and the role's resolved `statements`.
    pub functions: serde_json::Value,
    aws: AwsOptions,
}

impl Stack {
    fn function(&self, function: &str) -> &serde_json::Value {
        let f = &self.functions[function];
        assert!(f.is_object(), "the template has no function {function}");
        f
    }

    /// How `function` (a logical id, `PlannerFunction`) reaches AWS: with
    /// its role's credentials.
    pub fn aws(&self, function: &str) -> AwsOptions {
        let key = self.function(function)["access_key"].as_str().unwrap();
        AwsOptions {
            credentials: Some((key.to_string(), "secret".into())),
            ..self.aws.clone()
        }
    }

    /// The function's `MemorySize` in bytes and `Timeout`, as deployed.
    pub fn limits(&self, function: &str) -> (u64, std::time::Duration) {
        let f = self.function(function);
        (
            f["memory"].as_u64().unwrap() << 20,
            std::time::Duration::from_secs(f["timeout"].as_u64().unwrap()),
        )
    }

    /// Every call of this stack's functions that their roles refused, each
    /// naming the function, the action, the resource and why.
    pub fn denials(&self) -> Vec<serde_json::Value> {
        let path = format!("/__iam/denials?stack={}", self.name);
        moto().iam("GET", &path, "").as_array().unwrap().clone()
    }

    /// Forget the refusals so far: the test meant them, and checked them.
    pub fn forgive(&self) {
        let path = format!("/__iam/forgive?stack={}", self.name);
        moto().iam("POST", &path, "");
    }

    /// Panics, listing them, if any call of this stack's functions was refused.
    pub fn assert_nothing_refused(&self) {
        let denials = self.denials();
        assert!(
            denials.is_empty(),
            "calls the functions' roles do not allow (template.yaml):\n{}",
            denials
                .iter()
                .map(|d| format!(
                    "  {} {} on {}: {} ({})",
                    d["function"], d["action"], d["resource"], d["why"], d["request"]
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// A faulty network in front of the server (`tests/fault_proxy.py`): every
/// `every`-th request (never if 0) is answered with throttling, a reset
/// connection, a server error, a body cut halfway (a GET) or, for a write,
/// applied with its answer lost. The proxy also keeps two promises of AWS
/// that moto does not: Glue refuses an UpdateTable with a stale VersionId,
/// and a multipart upload completed twice answers NoSuchUpload. Stopped when
/// dropped.
pub struct FaultProxy {
    pub endpoint: String,
    port: u16,
    child: Child,
}

impl FaultProxy {
    pub fn start(every: u32) -> FaultProxy {
        FaultProxy::losing_first(every, &[])
    }

    /// As [`FaultProxy::start`], and the first write of each class named
    /// (`put`, `create`, `complete`, `delete`, `glue`) is applied and its
    /// answer lost; a class named `!<class>` is refused, every time, with
    /// S3's 400 `InvalidPart`.
    pub fn losing_first(every: u32, classes: &[&str]) -> FaultProxy {
        let upstream = moto().port;
        let script = repo_root().join("tests/fault_proxy.py");
        let mut child = Command::new(python())
            .arg(&script)
            .arg(upstream.to_string())
            .arg(every.to_string())
            .arg(classes.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the fault proxy starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("the proxy prints its port");
        let port: u16 = line.trim().parse().expect("a port");
        FaultProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            child,
        }
    }

    /// How the engine and the SDKs reach the server through this proxy.
    pub fn aws(&self) -> AwsOptions {
        AwsOptions {
            endpoint: Some(self.endpoint.clone()),
            ..moto().aws()
        }
    }

    /// The environment of a `sluice` process that reaches the server through this proxy.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = moto().env();
        for (k, v) in &mut env {
            if *k == "AWS_ENDPOINT_URL" {
                *v = self.endpoint.clone();
            }
        }
        env
    }

    /// How many requests were spoiled, by kind, and how many forwarded.
    pub fn counts(&self) -> serde_json::Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("proxy listens");
        write!(
            s,
            "GET /__faults HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("request sent");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("response read");
        let body = response.split("\r\n\r\n").nth(1).expect("a body");
        serde_json::from_str(body).expect("JSON counts")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
