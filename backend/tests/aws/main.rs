//! The AWS path offline, against real implementations of the AWS APIs:
//! moto's server (S3 and Step Functions, executing our state machine definition)
//! with its Lambda invocations served by `cargo lambda watch` running our real
//! `bootstrap` binary. Needs the test venv (`make python-setup`); without it these
//! tests say so and pass, unless COSMICAI_REQUIRE_AWS_TESTS=1 (as `make test` sets).

mod bucket;
mod cai;
#[path = "../common/mod.rs"]
mod common;
mod execution;
mod handler;
mod store;
use common::{cosmicai, last_json_line};
use cosmicai_engine::store::ObjectStore;
use cosmicai_engine::store::s3::{S3Config, S3Store};
use cosmicai_lambda::{S3Settings, handle};
use cosmicai_shared::aws::{RankItem, StageEvent, SummarizeEvent};
use cosmicai_shared::run::{Device, RunRequest};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "cosmicai-test";
/// The stack's InputBucket: a CAI user's data bucket, which runs read in place.
const INPUT_BUCKET: &str = "cosmicai-cai-data";
const ROLE: &str = "arn:aws:iam::123456789012:role/cosmicai-states";
const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:cosmicai-worker";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The test venv's bin folder, or `None` (with a note) when it is not installed.
fn venv_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("COSMICAI_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv"))
        .join("bin");
    if bin.join("moto_server").exists() && bin.join("cargo-lambda").exists() {
        return Some(bin);
    }
    if std::env::var("COSMICAI_REQUIRE_AWS_TESTS").as_deref() == Ok("1") {
        panic!(
            "moto and cargo-lambda are not in {}: run `make python-setup`",
            bin.display()
        );
    }
    eprintln!(
        "skipping: no moto/cargo-lambda in {} (make python-setup)",
        bin.display()
    );
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// moto + cargo lambda + our bootstrap; all killed on drop.
struct Stack {
    endpoint: String,
    children: Vec<Child>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The handler binary. `cargo test --workspace` builds it with the test build's
/// features (the lambda crate has an integration test), so it is used as is when
/// it is newer than every source it is made of; otherwise (this package tested
/// alone, or sources edited since) it is built here, once per test process.
fn bootstrap() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let path = Path::new(env!("CARGO_BIN_EXE_cosmicai")).with_file_name("bootstrap");
            if is_fresh(&path) {
                return path;
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "cosmicai-lambda", "--bin", "bootstrap"])
                .current_dir(workspace())
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building bootstrap failed");
            path
        })
        .clone()
}

/// Whether `binary` is newer than the Lambda's sources and everything they use.
fn is_fresh(binary: &Path) -> bool {
    fn newest(path: &Path) -> std::time::SystemTime {
        let Ok(meta) = std::fs::metadata(path) else {
            return std::time::SystemTime::UNIX_EPOCH;
        };
        let own = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        if !meta.is_dir() {
            return own;
        }
        std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| newest(&entry.path()))
            .fold(own, std::cmp::max)
    }
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return false;
    };
    let root = workspace();
    [
        "lambda",
        "engine",
        "model",
        "shared",
        "Cargo.lock",
        "Cargo.toml",
    ]
    .iter()
    .map(|part| newest(&root.join(part)))
    .all(|changed| changed <= built)
}

fn start_stack(bin: &Path) -> Stack {
    let mut children = Vec::new();
    // The Lambda runtime and invoke APIs, without building anything.
    let lambda_port = free_port();
    children.push(
        Command::new(bin.join("cargo-lambda"))
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(lambda_port.to_string())
            .current_dir(workspace().join("lambda"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cargo lambda watch"),
    );
    wait_for_port(lambda_port, "cargo lambda watch");
    // The port answered: ours, unless our watch failed to bind it (another
    // test's took it between free_port and the bind) and that one answered;
    // ours then exits soon after, which a second is enough to see.
    for _ in 0..10 {
        assert!(
            children[0].try_wait().unwrap().is_none(),
            "cargo lambda watch exited: port {lambda_port} taken by another test's"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut moto = Command::new(bin.join("python"))
        .arg(workspace().join("tests/aws/moto_server.py"))
        .args(["--port", "0", "--lambda-url"])
        .arg(format!("http://127.0.0.1:{lambda_port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto");
    let mut line = String::new();
    BufReader::new(moto.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    children.push(moto);
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("moto said {line:?}"));
    let endpoint = format!("http://127.0.0.1:{port}");
    let bootstrap = bootstrap();
    children.push(
        Command::new(bootstrap)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{lambda_port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("COSMICAI_S3_ENDPOINT", &endpoint)
            // As the template deploys it: results only there, and left out of
            // listings of the whole bucket.
            .env("COSMICAI_RESULTS_PREFIX", "results")
            .env("COSMICAI_MODEL_BUCKET", BUCKET)
            .env("COSMICAI_INPUT_BUCKET", INPUT_BUCKET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bootstrap"),
    );
    Stack { endpoint, children }
}

fn s3(stack: &Stack) -> S3Store {
    other_bucket(stack, BUCKET)
}

/// A bucket of the stack's S3 in `region`, made if it is not there.
fn other_bucket_in(stack: &Stack, bucket: &str, region: &str) -> S3Store {
    let store = other_bucket(stack, BUCKET);
    let _ = store.block_on(
        store
            .client()
            .create_bucket()
            .bucket(bucket)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                    .build(),
            )
            .send(),
    );
    other_bucket(stack, bucket)
}

/// A bucket of the stack's S3, made if it is not there.
fn other_bucket(stack: &Stack, bucket: &str) -> S3Store {
    let store = S3Store::connect(S3Config {
        bucket: bucket.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(stack.endpoint.clone()),
        static_credentials: Some(("test".into(), "test".into())),
        unlisted: None,
    })
    .unwrap();
    let _ = store.block_on(store.client().create_bucket().bucket(bucket).send());
    store
}

fn sfn(store: &S3Store, stack: &Stack) -> aws_sdk_sfn::Client {
    let config = aws_sdk_sfn::config::Builder::from(store.sdk_config())
        .endpoint_url(&stack.endpoint)
        .build();
    aws_sdk_sfn::Client::from_conf(config)
}

/// Our definition with the template's substitutions, as CloudFormation makes it.
fn definition() -> String {
    std::fs::read_to_string(workspace().join("infra/aws/statemachine.asl.json"))
        .unwrap()
        .replace("${FunctionArn}", FUNCTION)
        // moto runs only STANDARD child executions (production uses EXPRESS).
        .replace("${ChildExecutionType}", "STANDARD")
        .replace("${GpuJobQueueArn}", "none")
        .replace("${GpuJobDefinitionArn}", "none")
        .replace("${DataBucketName}", BUCKET)
        .replace("${ResultsPrefix}", "results")
        .replace("${InputBucket}", INPUT_BUCKET)
        .replace("${WorkerMemoryMB}", WORKER_MEMORY_MB)
}

/// The workers' memory the moto stack's definition names.
const WORKER_MEMORY_MB: &str = "2048";

fn create_state_machine(store: &S3Store, client: &aws_sdk_sfn::Client, name: &str) -> String {
    store
        .block_on(
            client
                .create_state_machine()
                .name(name)
                .definition(definition())
                .role_arn(ROLE)
                .send(),
        )
        .unwrap()
        .state_machine_arn()
        .to_string()
}

/// The stack with our state machine created in it: (stack, bucket, Step Functions, ARN).
fn deployed(bin: &Path, name: &str) -> (Stack, S3Store, aws_sdk_sfn::Client, String) {
    let stack = start_stack(bin);
    let store = s3(&stack);
    let client = sfn(&store, &stack);
    let arn = create_state_machine(&store, &client, name);
    (stack, store, client, arn)
}

/// Copies the partitions of `data` into the bucket under `prefix`.
fn upload_dir(store: &S3Store, data: &Path, prefix: &str) {
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            let name = path.file_name().unwrap().to_string_lossy();
            store
                .put(&format!("{prefix}/{name}"), &std::fs::read(&path).unwrap())
                .unwrap();
        }
    }
}

/// The upload markers (`DATASET-INCOMPLETE`) under the folder `prefix`.
fn markers(store: &S3Store, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.contains("/DATASET-INCOMPLETE"))
        .collect()
}

/// An execution's status once it is no longer RUNNING (or after `seconds`).
fn status_when_done(
    store: &S3Store,
    client: &aws_sdk_sfn::Client,
    execution: &str,
    seconds: u64,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let described = store
            .block_on(client.describe_execution().execution_arn(execution).send())
            .unwrap();
        if described.status().as_str() != "RUNNING" || Instant::now() > deadline {
            return described.status().as_str().to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An execution's history, as GetExecutionHistory tells it.
fn history_of(
    store: &S3Store,
    client: &aws_sdk_sfn::Client,
    execution: &str,
) -> aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput {
    store
        .block_on(
            client
                .get_execution_history()
                .execution_arn(execution)
                .send(),
        )
        .unwrap()
}

/// The errors and causes an execution ended with (DescribeExecution's and its
/// failed tasks'), as text to search for a message. Read field by field: the
/// SDK's Debug hides them as sensitive.
fn execution_error(store: &S3Store, client: &aws_sdk_sfn::Client, execution: &str) -> String {
    let described = store
        .block_on(client.describe_execution().execution_arn(execution).send())
        .unwrap();
    let tasks = history_of(store, client, execution);
    let failed = tasks
        .events()
        .iter()
        .filter_map(|e| e.task_failed_event_details())
        .flat_map(|d| [d.error(), d.cause()]);
    [described.error(), described.cause()]
        .into_iter()
        .chain(failed)
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Map run an execution started, as DescribeMapRun tells it.
fn map_run_of(
    store: &S3Store,
    client: &aws_sdk_sfn::Client,
    execution: &str,
) -> aws_sdk_sfn::operation::describe_map_run::DescribeMapRunOutput {
    let history = history_of(store, client, execution);
    let map_run = history
        .events()
        .iter()
        .find_map(|e| {
            e.map_run_started_event_details()
                .and_then(|d| d.map_run_arn())
        })
        .expect("a MapRunStarted event")
        .to_string();
    store
        .block_on(client.describe_map_run().map_run_arn(&map_run).send())
        .unwrap()
}

/// Waits until an execution of state machine `arn` has started its Map.
fn wait_for_a_map(store: &S3Store, client: &aws_sdk_sfn::Client, arn: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let listed = store
            .block_on(client.list_executions().state_machine_arn(arn).send())
            .unwrap();
        for execution in listed.executions() {
            let history = store
                .block_on(
                    client
                        .get_execution_history()
                        .execution_arn(execution.execution_arn())
                        .send(),
                )
                .unwrap();
            if history
                .events()
                .iter()
                .any(|e| e.map_run_started_event_details().is_some())
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the Map never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The DR14 catalog in 4 partitions, in a local data directory.
fn dataset(dir: &Path) -> PathBuf {
    dataset_of(dir, 2200)
}

/// The DR14 catalog under `dir/data`, in partitions of `objects` objects.
fn dataset_of(dir: &Path, objects: usize) -> PathBuf {
    let data = dir.join("data");
    let out = cosmicai(&[
        "catalog",
        "import",
        &common::asset("catalogs/skyserver_dr14.csv.gz"),
        "--out",
        &data.display().to_string(),
        "--objects",
        &objects.to_string(),
    ]);
    assert!(out.status.success());
    data
}

/// Writes over the last partition of `data` with other bytes of its size (the
/// upload sends it, its ETag not the bucket's, and the rank reading it fails
/// for good); its path and its bytes as they were.
fn break_last_partition(data: &Path) -> (PathBuf, Vec<u8>) {
    let last = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .max()
        .unwrap();
    let good = std::fs::read(&last).unwrap();
    std::fs::write(&last, vec![b'x'; good.len()]).unwrap();
    (last, good)
}

fn aws_run(stack: &Stack, arn: &str, data: &Path, extra: &[&str]) -> std::process::Output {
    aws_command(stack, arn, data, extra).output().unwrap()
}

/// `cosmicai run --target aws` against the stack, with moto's credentials.
fn aws_command(stack: &Stack, arn: &str, data: &Path, extra: &[&str]) -> Command {
    let mut command = aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")));
    command
        .args(["run", "--target", "aws", "--data"])
        .arg(data)
        .args([
            "--bucket",
            BUCKET,
            "--state-machine-arn",
            arn,
            "--aws-endpoint",
        ])
        .arg(&stack.endpoint)
        .args(extra);
    command
}

fn aws_env(mut command: Command) -> Command {
    command
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("COSMICAI_AWS_POLL_MS", "200");
    command
}

/// Sets (`Some`) or reads the faults moto_server.py injects: calls of a Step
/// Functions action answered with a ThrottlingException.
fn faults(stack: &Stack, set: Option<Value>) -> Value {
    use std::io::{Read, Write};
    let addr = stack.endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = match set {
        Some(body) => {
            let body = body.to_string();
            format!(
                "POST /cosmicai-faults HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        None => {
            format!("GET /cosmicai-faults HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        }
    };
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply}"))
}

/// `cosmicai serve` on the data directory `data` with the stack as its AWS
/// deployment, as a team's server runs; killed when dropped.
struct Served {
    child: Child,
    /// host:port to connect to.
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_with_stack(stack: &Stack, arn: &str, data: &Path) -> Served {
    let mut command = aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")));
    command
        .env("COSMICAI_AWS_BUCKET", BUCKET)
        .env("COSMICAI_STATE_MACHINE_ARN", arn)
        .env("COSMICAI_AWS_ENDPOINT", &stack.endpoint);
    serve_by(command, data)
}

/// `cosmicai serve` on `data` with no AWS deployment.
fn serve_without_aws(data: &Path) -> Served {
    let mut command = aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")));
    command
        .env_remove("COSMICAI_AWS_BUCKET")
        .env_remove("COSMICAI_STATE_MACHINE_ARN");
    serve_by(command, data)
}

fn serve_by(mut command: Command, data: &Path) -> Served {
    // The served datasets a first start builds from the bundled data (minutes
    // in a debug build) are not what these tests are about: the catalog alone
    // (a server serves some objects), the cutouts none.
    if !data.join("catalog").is_dir() {
        let out = cosmicai(&[
            "catalog",
            "import",
            &common::asset("catalogs/skyserver_dr14.csv.gz"),
            "--out",
            &data.join("catalog").display().to_string(),
        ]);
        assert!(out.status.success());
    }
    for dataset in ["real", "synthetic"] {
        std::fs::create_dir_all(data.join(dataset)).unwrap();
    }
    let mut child = command
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args([
            "--assets",
            &common::asset(""),
            "--frontend",
            "/nonexistent-frontend",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::serving_addr(&mut child);
    Served { child, addr }
}

/// `method path` with an empty body on `server`: the reply's status and body
/// (JSON, else its text as a JSON string).
fn http(server: &Served, method: &str, path: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete reply");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let status = head[9..12].parse().unwrap();
    let body = &raw[split + 4..];
    let body = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    (status, body)
}
