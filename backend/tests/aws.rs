//! The AWS path offline, against real implementations of the AWS APIs:
//! moto's server (S3 and Step Functions, executing our state machine definition)
//! with its Lambda invocations served by `cargo lambda watch` running our real
//! `bootstrap` binary. Needs the test venv (`make python-setup`); without it these
//! tests say so and pass, unless COSMICAI_REQUIRE_AWS_TESTS=1 (as `make test` sets).

mod common;
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bootstrap"),
    );
    Stack { endpoint, children }
}

fn s3(stack: &Stack) -> S3Store {
    let store = S3Store::connect(S3Config {
        bucket: BUCKET.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(stack.endpoint.clone()),
        static_credentials: Some(("test".into(), "test".into())),
        unlisted: None,
    })
    .unwrap();
    let _ = store.block_on(store.client().create_bucket().bucket(BUCKET).send());
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

/// The Map run an execution started, as DescribeMapRun tells it.
fn map_run_of(
    store: &S3Store,
    client: &aws_sdk_sfn::Client,
    execution: &str,
) -> aws_sdk_sfn::operation::describe_map_run::DescribeMapRunOutput {
    let history = store
        .block_on(
            client
                .get_execution_history()
                .execution_arn(execution)
                .send(),
        )
        .unwrap();
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

#[test]
fn a_run_on_step_functions_and_lambda_matches_the_local_layout() {
    let Some(bin) = venv_bin() else { return };
    let (stack, store, client, arn) = deployed(&bin, "cosmicai-e2e");
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    // Files younger than this have their ETags worked out but not remembered
    // (a second write in the same clock tick could hide): let them settle.
    std::thread::sleep(std::time::Duration::from_millis(3100));

    let out = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "3", "--batch-size", "512", "--json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("4 partitions uploaded"), "{stderr}");
    let s = last_json_line(&out);
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(
        (s["ranks"].as_u64(), s["objects"].as_u64()),
        (Some(3), Some(8443))
    );
    assert!(s["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(s["metrics"]["galaxy"]["nmad"].as_f64().unwrap() < 0.03);
    let run_id = s["run_id"].as_str().unwrap().to_string();
    let result_path = s["result_path"].as_str().unwrap().to_string();
    // Every rank measured by the handler itself: billed like Lambda, in whole ms.
    for m in s["per_rank"].as_array().unwrap() {
        assert!(m["error"].is_null(), "{m}");
        let (d, billed) = (
            m["duration_s"].as_f64().unwrap(),
            m["billed_duration_ms"].as_u64().unwrap(),
        );
        assert!(
            billed as f64 >= d * 1000.0 && (billed as f64) < d * 1000.0 + 1.0,
            "{m}"
        );
    }

    // CAI's layout in the bucket, and the same files copied into the data directory.
    let keys: Vec<String> = store
        .list(&result_path)
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    for name in [
        "payload.json",
        "0.json",
        "1.json",
        "2.json",
        "combined_data.json",
        "summary.json",
    ] {
        let key = format!("{result_path}/{name}");
        assert!(keys.contains(&key), "{key} not in {keys:?}");
        assert!(data.join(&key).is_file(), "{key} not copied back");
    }
    // The Map read its items from the plan in S3 and wrote its results back there
    // (ItemReader, ResultWriter), not through the state.
    assert!(
        keys.contains(&format!("{result_path}/plan.json")),
        "{keys:?}"
    );
    let written: Vec<String> = store
        .list("results/map-results")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(
        written.iter().any(|k| k.ends_with("manifest.json")),
        "no ResultWriter manifest in {written:?}"
    );
    let combined: Value = serde_json::from_slice(
        &store
            .get(&format!("{result_path}/combined_data.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(combined.as_array().unwrap().len(), 3);

    // The execution as Step Functions recorded it: named after the run, a Map run of 3.
    let execution = format!("{}:{run_id}", arn.replace(":stateMachine:", ":execution:"));
    let described = store
        .block_on(client.describe_execution().execution_arn(&execution).send())
        .unwrap();
    assert_eq!(described.status().as_str(), "SUCCEEDED");
    let run = map_run_of(&store, &client, &execution);
    assert_eq!(run.max_concurrency(), 3, "MaxConcurrency from world_size");
    assert_eq!(run.item_counts().unwrap().succeeded(), 3);

    // Recorded in the registry like a local run.
    let runs = cosmicai(&["runs", "--data", &data.display().to_string(), "--json"]);
    let listed = String::from_utf8_lossy(&runs.stdout);
    assert!(
        listed.contains(&run_id) && listed.contains("succeeded"),
        "{listed}"
    );

    // A second run finds the partitions already in the bucket.
    let again = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "2", "--batch-size", "1000"],
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    // Their ETags were remembered as they went up: none is read again.
    assert!(
        stderr.contains("0 partitions uploaded (0 bytes), 4 already there (0 read to compare)"),
        "{stderr}"
    );
    // Another dataset's file of the same name and size in the bucket is not ours:
    // its ETag tells it apart, and ours goes up over it. A local file touched
    // since (a new change time) is read again to compare, not trusted.
    let listed = store.list("partitions").unwrap();
    let first = &listed[0];
    let touched = data.join(listed[3].key.trim_start_matches("partitions/"));
    let file = std::fs::File::options().write(true).open(&touched).unwrap();
    file.set_modified(std::time::SystemTime::now()).unwrap();
    let other: Vec<u8> = (0..first.size).map(|i| (i % 251) as u8).collect();
    store.put(&first.key, &other).unwrap();
    let third = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "2", "--batch-size", "1000"],
    );
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert!(third.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "1 partitions uploaded ({} bytes), 3 already there (1 read to compare)",
            first.size
        )),
        "{stderr}"
    );
    assert_ne!(store.get(&first.key).unwrap(), other);
    // More ranks than files: the ranks planned none are no Map item (no Lambda
    // call, child or writes), and count as done with nothing read.
    let wide = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "7", "--batch-size", "1000", "--json"],
    );
    let stderr = String::from_utf8_lossy(&wide.stderr);
    assert!(wide.status.success(), "{stderr}");
    let s = last_json_line(&wide);
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(
        (s["ranks"].as_u64(), s["objects"].as_u64()),
        (Some(7), Some(8443)),
        "{s}"
    );
    assert_eq!(s["failed_ranks"], serde_json::json!([]), "{s}");
    let execution = format!(
        "{}:{}",
        arn.replace(":stateMachine:", ":execution:"),
        s["run_id"].as_str().unwrap()
    );
    let items = map_run_of(&store, &client, &execution);
    assert_eq!(items.item_counts().map(|c| c.total()), Some(4));
    assert_eq!(items.max_concurrency(), 4);
    let wide_path = s["result_path"].as_str().unwrap();
    assert!(store.get(&format!("{wide_path}/3.json")).is_ok());
    assert!(store.get(&format!("{wide_path}/4.json")).is_err());
    // A partition another dataset left under the prefix would run too: refused
    // by name before the execution starts.
    store
        .put("partitions/zz-other.safetensors", &other)
        .unwrap();
    let stale = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "2", "--batch-size", "1000"],
    );
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(!stale.status.success());
    assert!(
        stderr.contains(&format!(
            "s3://{BUCKET}/partitions holds 1 partition files that {} does not (such as zz-other.safetensors)",
            data.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_local_files_etag_is_the_one_s3_gives_it() {
    // One part, the multipart threshold exactly, and several parts, against
    // moto, which computes ETags as S3 does (MD5, or MD5 of the parts' MD5s).
    let Some(bin) = venv_bin() else { return };
    let stack = start_stack(&bin);
    let store = s3(&stack);
    let threshold = cosmicai_engine::store::s3::MULTIPART_THRESHOLD;
    for len in [0, 1000, threshold, threshold + 1, 20_000_000] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
        let key = format!("etags/{len}");
        store.put(&key, &bytes).unwrap();
        let listed = store.list_with_etags("etags").unwrap();
        let (_, etag) = listed.iter().find(|(o, _)| o.key == key).unwrap();
        let ours = cosmicai_engine::store::s3::etag_of(&bytes[..], len as u64).unwrap();
        assert_eq!(&ours, etag, "{len} bytes");
        assert_eq!(etag.contains('-'), len > threshold, "{len} bytes: {etag}");
        // Streamed from a reader, part by part: the same object and ETag.
        let streamed = format!("streamed/{len}");
        let said = store.put_from(&streamed, &bytes[..], len as u64).unwrap();
        assert_eq!(&said, etag, "{len} bytes streamed");
        assert_eq!(store.get(&streamed).unwrap(), bytes, "{len} bytes streamed");
    }
    // A reader that ends early or goes on past its length (a file cut, or grown,
    // while it was read) fails by name and leaves no object, in one part or in
    // several.
    for len in [1000, 20_000_000] {
        for (bytes, said) in [
            (vec![1u8; len - 10], "changed while it was read"),
            (vec![1u8; len + 10], "grew past its"),
        ] {
            let key = format!("cut/{len}");
            let err = store.put_from(&key, &bytes[..], len as u64).unwrap_err();
            assert!(err.to_string().contains(said), "{err}");
            assert!(store.list("cut").unwrap().is_empty());
        }
    }
    // No half multipart upload is left to be billed.
    let uploads = store
        .block_on(
            store
                .client()
                .list_multipart_uploads()
                .bucket(BUCKET)
                .send(),
        )
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{uploads:?}");
}

#[test]
fn a_ranged_read_of_a_replaced_object_is_refused() {
    let Some(bin) = venv_bin() else { return };
    let stack = start_stack(&bin);
    let store = s3(&stack);
    // A partition read in ranges is read from one object: once another object
    // replaced it, moto, as S3 does, refuses the read (412 to If-Match), and
    // the store names that.
    let key = "versions/part-0.safetensors";
    store.put(key, &[1u8; 1000]).unwrap();
    let mut read = Vec::new();
    let (n, etag) = store
        .get_range_if_match(key, 0..100, None, &mut read)
        .unwrap();
    let etag = etag.expect("S3 sends an ETag");
    assert_eq!(n, 100);
    let again = store
        .get_range_if_match(key, 100..200, Some(&etag), &mut read)
        .unwrap();
    assert_eq!(again, (100, Some(etag.clone())));
    store.put(key, &[2u8; 1000]).unwrap();
    let err = store
        .get_range_if_match(key, 200..300, Some(&etag), &mut read)
        .unwrap_err();
    assert!(
        matches!(err, cosmicai_engine::store::StoreError::Changed { .. }),
        "{err}"
    );
    assert_eq!(read, [1u8; 200]);
}

#[test]
fn failed_ranks_are_reported_and_the_tolerance_decides_the_execution() {
    let Some(bin) = venv_bin() else { return };
    let (stack, store, client, arn) = deployed(&bin, "cosmicai-failures");
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    // Break the last partition here (same size, other bytes): the upload sends
    // it, as its ETag is not the bucket's, and the rank reading it fails for good.
    let ok = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "4", "--batch-size", "512"],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let last = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .max()
        .unwrap();
    let size = std::fs::metadata(&last).unwrap().len();
    std::fs::write(&last, vec![b'x'; size as usize]).unwrap();

    // moto runs every item and ignores the tolerance (real Step Functions fails the Map
    // above it, and the definition then summarizes and fails the execution); what
    // can be checked here is that the request's value reaches the Map run.
    for tolerated in [100.0, 10.0] {
        let request = tmp.path().join(format!("request-{tolerated}.json"));
        std::fs::write(
            &request,
            serde_json::json!({"batch_size": 512, "world_size": 4, "result_path": format!("results/t{tolerated}"),
                "tolerated_failure_percentage": tolerated})
            .to_string(),
        )
        .unwrap();
        let out = aws_run(
            &stack,
            &arn,
            &data,
            &["--request", &request.display().to_string(), "--json"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Within the tolerance, partial: the summary, then exit code 3, so that
        // a script stops there. Past it (1 of 4 ranks is 25%), failed, as the
        // real Map's execution fails.
        let (status, code) = if tolerated >= 25.0 {
            ("partial", 3)
        } else {
            ("failed", 1)
        };
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(stderr.contains(&format!("ended {status}")), "{stderr}");
        let s = last_json_line(&out);
        assert_eq!(s["status"], status, "{s}");
        assert_eq!(s["failed_ranks"], serde_json::json!([3]), "{s}");
        let error = s["per_rank"][3]["error"].as_str().unwrap_or_default();
        assert!(error.contains("Map item failed"), "{s}");
        assert!(s["per_rank"][2]["error"].is_null(), "{s}");
        let execution = format!(
            "{}:{}",
            arn.replace(":stateMachine:", ":execution:"),
            s["run_id"].as_str().unwrap()
        );
        let run = map_run_of(&store, &client, &execution);
        assert_eq!(run.tolerated_failure_percentage(), tolerated as f32);
    }
}

#[test]
fn an_execution_can_be_stopped() {
    let Some(bin) = venv_bin() else { return };
    let (stack, store, client, arn) = deployed(&bin, "cosmicai-stop");
    let tmp = tempfile::tempdir().unwrap();
    // Many small partitions (a rank only runs with a file to read).
    let data = dataset_of(tmp.path(), 130);
    upload_dir(&store, &data, "stop");
    // Many ranks, one function instance: the Map takes a few seconds.
    let input = serde_json::json!({"bucket": BUCKET, "data_prefix": "stop", "batch_size": 8,
        "world_size": 64, "result_path": "results/stop"});
    let started = store
        .block_on(
            client
                .start_execution()
                .state_machine_arn(&arn)
                .name("stopped-run")
                .input(input.to_string())
                .send(),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let history = store
            .block_on(
                client
                    .get_execution_history()
                    .execution_arn(started.execution_arn())
                    .send(),
            )
            .unwrap();
        if history
            .events()
            .iter()
            .any(|e| e.map_run_started_event_details().is_some())
        {
            break;
        }
        assert!(Instant::now() < deadline, "the Map never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A second run meanwhile would share the workers' concurrency: refused
    // by name before anything is uploaded.
    // What the running one writes goes under results/; the rest must not move.
    let inputs = || -> Vec<_> {
        let all = store.list("").unwrap();
        all.into_iter()
            .filter(|o| !o.key.starts_with("results/"))
            .collect()
    };
    let before = inputs();
    let out = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "2", "--batch-size", "8"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("execution stopped-run of this stack is running")
            && stderr.contains("stop-execution --execution-arn arn:aws:states:"),
        "{stderr}"
    );
    assert!(store.list("results/run-").unwrap().is_empty());
    assert_eq!(inputs(), before, "nothing uploaded");
    store
        .block_on(
            client
                .stop_execution()
                .execution_arn(started.execution_arn())
                .cause("test")
                .send(),
        )
        .unwrap();
    // moto stops it asynchronously.
    assert_eq!(
        status_when_done(&store, &client, started.execution_arn(), 30),
        "ABORTED"
    );
    // Summarize never ran. (moto lets the Map's items already handed out finish.)
    assert!(store.get("results/stop/summary.json").is_err());
}

#[test]
fn the_handler_stages_called_directly() {
    let Some(bin) = venv_bin() else { return };
    let stack = start_stack(&bin);
    let store = s3(&stack);
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    upload_dir(&store, &data, "direct");
    let settings = S3Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(stack.endpoint.clone()),
        static_credentials: Some(("test".into(), "test".into())),
        results_prefix: Some("results".into()),
    };
    let request = RunRequest {
        bucket: BUCKET.into(),
        data_prefix: "direct".into(),
        file_limit: Some(3),
        batch_size: 256,
        world_size: 2,
        result_path: "results/direct".into(),
        device: Device::Cpu,
        precision: Default::default(),
        memory_mb: 1024,
        model: "photoz".into(),
        retries: 0,
        tolerated_failure_percentage: 100.0,
        timeout_s: None,
    };
    let init = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            run_id: "direct".into(),
            request: request.clone(),
        },
    )
    .unwrap();
    assert_eq!(init["files"], 3);
    assert_eq!(init["max_concurrency"], 2);
    assert_eq!(init["ranks"], 2);
    // The Map's items come from S3, one per rank; the state carries only their key.
    let plan: Vec<RankItem> =
        serde_json::from_slice(&store.get(init["plan_key"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(plan.iter().map(|i| i.rank).collect::<Vec<_>>(), [0, 1]);
    let item = |rank| RankItem {
        run_id: "direct".into(),
        bucket: BUCKET.into(),
        result_path: "results/direct".into(),
        rank,
        device: Device::Cpu,
        entered_at: None,
    };
    let m0 = handle(&settings, StageEvent::Infer(item(0))).unwrap();
    assert!(m0["objects"].as_u64().unwrap() > 0 && m0["billed_duration_ms"].as_u64().unwrap() >= 1);
    // Initialize retried by the state machine (its answer lost) goes on with its plan.
    let again = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            run_id: "direct".into(),
            request: request.clone(),
        },
    )
    .unwrap();
    assert_eq!(again["files"], 3);
    // A CUDA run is planned by this Lambda, which has no GPU and no CUDA build:
    // its ranks run on the stack's Batch queue.
    let gpu = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            run_id: "direct-gpu".into(),
            request: RunRequest {
                device: Device::Cuda,
                result_path: "results/direct-gpu".into(),
                ..request.clone()
            },
        },
    )
    .unwrap();
    assert_eq!(
        (gpu["files"].as_u64(), gpu["ranks"].as_u64()),
        (Some(3), Some(2)),
        "{gpu}"
    );
    // A rank whose Infer state began longer ago than an Express child lasts stops
    // before it reads or writes anything, with an error the state machine does not retry.
    let late = RankItem {
        entered_at: Some("2020-01-01T00:00:00.000Z".into()),
        ..item(1)
    };
    let e = handle(&settings, StageEvent::Infer(late)).unwrap_err();
    assert_eq!(e.kind, "RankOutOfTime", "{e}");
    assert!(store.get("results/direct/1.json").is_err());
    // Rank 1 never ran: Summarize names it failed.
    let summary = handle(
        &settings,
        StageEvent::Summarize(SummarizeEvent {
            run_id: "direct".into(),
            bucket: BUCKET.into(),
            result_path: "results/direct".into(),
            started: None,
            initialize_s: 0.1,
            map_error: None,
            child_execution_type: None,
        }),
    )
    .unwrap();
    assert_eq!(summary["status"], "partial");
    let written: Value =
        serde_json::from_slice(&store.get("results/direct/summary.json").unwrap()).unwrap();
    // Both ranks were Map items (the failed one too): two EXPRESS children.
    assert_eq!(written["cost"]["express_executions"], 2, "{written}");
    assert_eq!(summary["failed_ranks"], serde_json::json!([1]));
    assert_eq!(summary["objects"], m0["objects"]);
    // After a Map that failed as a whole, the missing ranks carry its error.
    let failed_map = handle(
        &settings,
        StageEvent::Summarize(SummarizeEvent {
            run_id: "direct".into(),
            bucket: BUCKET.into(),
            result_path: "results/direct".into(),
            started: Some("2026-01-01T00:00:00Z".into()),
            initialize_s: 0.1,
            map_error: Some(cosmicai_shared::aws::ItemError {
                error: Some("States.ExceedToleratedFailureThreshold".into()),
                cause: Some("1 of 2 items failed".into()),
            }),
            // A stack deployed with STANDARD children: priced as such.
            child_execution_type: Some("STANDARD".into()),
        }),
    )
    .unwrap();
    assert_eq!(failed_map["failed_ranks"], serde_json::json!([1]));
    let written: Value =
        serde_json::from_slice(&store.get("results/direct/summary.json").unwrap()).unwrap();
    assert_eq!(
        written["per_rank"][1]["error"],
        "States.ExceedToleratedFailureThreshold: 1 of 2 items failed"
    );
    assert!(
        written["duration_s"].as_f64().unwrap() > 1e6,
        "wall time from the execution start"
    );
    assert_eq!(written["cost"]["express_executions"], 0, "{written}");
    // The parent's 4 steps, and per child its start and 3 transitions of its own.
    assert_eq!(written["cost"]["state_transitions"], 4 + 2 * 4, "{written}");

    // Bad input: a clear error, classed so the state machine does not retry it.
    let mut bad = request.clone();
    bad.world_size = 0;
    let e = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            run_id: "bad".into(),
            request: bad,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, "InvalidRequest");
    assert!(e.message.contains("world_size"), "{}", e.message);
    let mut local = request.clone();
    local.bucket = "local".into();
    let e = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            run_id: "l".into(),
            request: local,
        },
    )
    .unwrap_err();
    assert!(e.message.contains("bucket 'local'"), "{}", e.message);
    // A rank of another run's result path is refused, not overwritten.
    let mut other = item(0);
    other.run_id = "someone-else".into();
    let e = handle(&settings, StageEvent::Infer(other)).unwrap_err();
    assert!(e.message.contains("belongs to run direct"), "{}", e.message);
}

#[test]
fn an_astromae_checkpoint_in_the_bucket_runs_through_the_handler() {
    let Some(bin) = venv_bin() else { return };
    let stack = start_stack(&bin);
    let store = s3(&stack);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cai");
    common::astromae_partitions(&data, true);
    upload_dir(&store, &data, "cai");
    // CAI's checkpoint as CAI ships it (a pickled DataParallel module), in the bucket.
    store
        .put(
            "models/astromae.pt",
            &std::fs::read(common::astromae_fixture("astromae_module.pt")).unwrap(),
        )
        .unwrap();
    let settings = S3Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(stack.endpoint.clone()),
        static_credentials: Some(("test".into(), "test".into())),
        results_prefix: Some("results".into()),
    };
    let request = RunRequest {
        bucket: BUCKET.into(),
        data_prefix: "cai".into(),
        file_limit: None,
        batch_size: 3,
        world_size: 2,
        result_path: "results/cai".into(),
        device: Device::Cpu,
        precision: Default::default(),
        memory_mb: 1024,
        model: "astromae:models/astromae.pt".into(),
        retries: 0,
        tolerated_failure_percentage: 100.0,
        timeout_s: None,
    };
    handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            run_id: "cai".into(),
            request: request.clone(),
        },
    )
    .unwrap();
    // Initialize read the partitions' headers (ranged GETs) to count their
    // objects: two of 32 x 32 cutouts a file.
    let payload: Value =
        serde_json::from_slice(&store.get("results/cai/payload.json").unwrap()).unwrap();
    let size = store.list("cai").unwrap()[0].size as f64;
    assert_eq!(
        payload["bytes_per_object"].as_f64(),
        Some(size / 2.0),
        "{payload}"
    );
    for rank in 0..2 {
        let item = RankItem {
            run_id: "cai".into(),
            bucket: BUCKET.into(),
            result_path: "results/cai".into(),
            rank,
            device: Device::Cpu,
            entered_at: None,
        };
        let m = handle(&settings, StageEvent::Infer(item)).unwrap();
        assert_eq!(m["objects"], 2, "{m}");
        assert!(m["init_duration_s"].as_f64().unwrap() > 0.0, "{m}");
    }
    let summary = handle(
        &settings,
        StageEvent::Summarize(SummarizeEvent {
            run_id: "cai".into(),
            bucket: BUCKET.into(),
            result_path: "results/cai".into(),
            started: None,
            initialize_s: 0.1,
            map_error: None,
            child_execution_type: None,
        }),
    )
    .unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    let expected = common::astromae_expected();
    let mut seen = 0;
    for rank in 0..2 {
        let bytes = store
            .get(&format!("results/cai/predictions/{rank}.safetensors"))
            .unwrap();
        let p = cosmicai_engine::pipeline::read_predictions(&bytes).unwrap();
        for (id, q) in p.object_id.iter().zip(&p.predicted) {
            let want = expected[(*id - 1) as usize];
            assert!(
                (q.redshift - want).abs() <= 1e-4,
                "object {id}: {} vs {want}",
                q.redshift
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 4);
    let combined: Value =
        serde_json::from_slice(&store.get("results/cai/combined_data.json").unwrap()).unwrap();
    assert_eq!(combined.as_array().unwrap().len(), 2);

    // Weights that are not in the bucket: refused at Initialize, before any rank.
    let mut missing = request.clone();
    missing.model = "astromae:models/none.pt".into();
    missing.result_path = "results/none".into();
    let e = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            run_id: "none".into(),
            request: missing,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, "InvalidRequest");
    assert!(e.message.contains("models/none.pt"), "{}", e.message);

    // Weights of another model: built once at Initialize, refused by name.
    store
        .put(
            "models/photoz.safetensors",
            &std::fs::read(common::asset("model/photoz.safetensors")).unwrap(),
        )
        .unwrap();
    let mut other = request.clone();
    other.model = "astromae:models/photoz.safetensors".into();
    other.result_path = "results/other".into();
    let e = handle(
        &settings,
        StageEvent::Initialize {
            worker_memory_mb: None,
            run_id: "other".into(),
            request: other,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, "InvalidRequest");
    assert!(
        e.message.contains("missing tensor") && e.message.contains("no rank was started"),
        "{}",
        e.message
    );
    assert!(store.get("results/other/payload.json").is_err(), "no plan");
}

#[test]
fn the_follower_rides_out_throttling_and_a_lost_run_is_followed_again() {
    let Some(bin) = venv_bin() else { return };
    let (stack, _store, _client, arn) = deployed(&bin, "cosmicai-throttled");
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let args = ["--world-size", "2", "--batch-size", "512", "--json"];

    // Throttled calls, more than the SDK's own retries would absorb (one attempt
    // each here): the follower backs off and carries on.
    faults(
        &stack,
        Some(serde_json::json!({"DescribeExecution": 3, "GetExecutionHistory": 2})),
    );
    let out = aws_command(&stack, &arn, &data, &args)
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(last_json_line(&out)["status"], "succeeded");
    assert_eq!(
        faults(&stack, None),
        serde_json::json!({"DescribeExecution": 0, "GetExecutionHistory": 0}),
        "every injected fault was met"
    );

    // Throttled for longer than the follower's patience: the run is left
    // interrupted (its execution goes on), not failed...
    faults(
        &stack,
        Some(serde_json::json!({"DescribeExecution": 1_000_000})),
    );
    let out = aws_command(&stack, &arn, &data, &args)
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("COSMICAI_AWS_PATIENCE_S", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("lost contact") && stderr.contains("cosmicai runs --follow"),
        "{stderr}"
    );
    let runs = common::ok_json(&["runs", "--data", &data.display().to_string(), "--json"]);
    let lost = &runs[0];
    assert_eq!(lost["status"], "interrupted", "{runs}");
    let id = lost["id"].as_str().unwrap().to_string();

    // ...and `runs --follow` picks it up once AWS answers again: the execution's
    // end, its results copied back, its row closed.
    faults(&stack, Some(serde_json::json!({"DescribeExecution": 0})));
    let out = aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")))
        .args(["runs", "--data"])
        .arg(&data)
        .args(["--follow", &id, "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = last_json_line(&out);
    assert_eq!(
        (summary["status"].as_str(), summary["objects"].as_u64()),
        (Some("succeeded"), Some(8443))
    );
    let result_path = summary["result_path"].as_str().unwrap();
    assert!(data.join(result_path).join("combined_data.json").is_file());
    let runs = common::ok_json(&["runs", "--data", &data.display().to_string(), "--json"]);
    assert_eq!(runs[0]["status"], "succeeded", "{runs}");
    // A local run, or one followed already, is no AWS execution to follow.
    let e = common::failure(&[
        "runs",
        "--data",
        &data.display().to_string(),
        "--follow",
        "run-0-0-0",
    ]);
    assert!(e.contains("not in the registry"), "{e}");
}

#[test]
fn cai_pt_partitions_are_converted_before_the_upload() {
    let Some(bin) = venv_bin() else { return };
    let (stack, _store, _client, arn) = deployed(&bin, "cosmicai-cai-pt");
    let tmp = tempfile::tempdir().unwrap();
    // A folder of CAI's own `.pt` partitions, as `split_data.py` writes them.
    let data = tmp.path().join("cai");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(common::astromae_fixture("partition.pt"), data.join("1.pt")).unwrap();
    let out = aws_run(
        &stack,
        &arn,
        &data,
        &["--world-size", "1", "--batch-size", "8", "--json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 CAI .pt files; converting them")
            && stderr.contains("1 partitions uploaded"),
        "{stderr}"
    );
    let s = last_json_line(&out);
    assert_eq!(
        (s["status"].as_str(), s["objects"].as_u64()),
        (Some("succeeded"), Some(4)),
        "{s}"
    );
}

#[test]
fn cais_own_input_runs_on_the_deployed_state_machine_over_its_pt_files_in_place() {
    // A CAI user's data and checkpoint already in the bucket, as CAI keeps them, and
    // an execution started with CAI's own payload: nothing converted or uploaded here.
    let Some(bin) = venv_bin() else { return };
    let (stack, store, client, arn) = deployed(&bin, "cosmicai-cai-input");
    let partition = std::fs::read(common::astromae_fixture("partition.pt")).unwrap();
    store.put("cai-data/p0.pt", &partition).unwrap();
    store.put("cai-data/p1.pt", &partition).unwrap();
    store
        .put(
            "models/astromae.pt",
            &std::fs::read(common::astromae_fixture("astromae_module.pt")).unwrap(),
        )
        .unwrap();
    // CAI's demo input's keys (its scripts bucket, its counts as strings, no
    // world_size), with its data bucket and a model of ours.
    let input = serde_json::json!({
        "bucket": "cosmicai2", "data_bucket": BUCKET, "data_prefix": "cai-data",
        "file_limit": "2", "batch_size": "3", "object_type": "folder",
        "S3_object_name": "scripts/Anomaly Detection",
        "script": "/tmp/scripts/Anomaly Detection/Inference/inference.py",
        "result_path": "results/cai-input", "model": "astromae:models/astromae.pt"
    });
    let started = store
        .block_on(
            client
                .start_execution()
                .state_machine_arn(&arn)
                .name("cai-input")
                .input(input.to_string())
                .send(),
        )
        .unwrap();
    // Taken into a registry here while it runs, and followed to its end.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let adopt = |arn: &str| {
        aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")))
            .args(["runs", "--data"])
            .arg(&home)
            .args([
                "--adopt",
                arn,
                "--bucket",
                BUCKET,
                "--aws-endpoint",
                &stack.endpoint,
            ])
            .arg("--json")
            .output()
            .unwrap()
    };
    let adopted = adopt(started.execution_arn());
    let stderr = String::from_utf8_lossy(&adopted.stderr);
    assert!(adopted.status.success(), "{stderr}");
    let followed = last_json_line(&adopted);
    assert_eq!(
        (followed["status"].as_str(), followed["objects"].as_u64()),
        (Some("succeeded"), Some(8)),
        "{followed}"
    );
    assert!(home.join("results/cai-input/combined_data.json").is_file());
    let runs = common::ok_json(&["runs", "--data", &home.display().to_string(), "--json"]);
    assert_eq!(
        (runs[0]["id"].as_str(), runs[0]["status"].as_str()),
        (Some("cai-input"), Some("succeeded")),
        "{runs}"
    );
    let again = adopt(started.execution_arn());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && stderr.contains("runs --follow cai-input"),
        "{stderr}"
    );
    // An execution Initialize refused, its result path another run's: nothing
    // of that run is copied or taken for this one's.
    let refused = store
        .block_on(
            client
                .start_execution()
                .state_machine_arn(&arn)
                .name("cai-input-again")
                .input(input.to_string())
                .send(),
        )
        .unwrap();
    let out = adopt(refused.execution_arn());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "cai-input-again ended FAILED with no plan of its own under results/cai-input"
        ),
        "{stderr}"
    );
    let runs = common::ok_json(&["runs", "--data", &home.display().to_string(), "--json"]);
    let row = |id: &str| {
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
    };
    assert_eq!(
        row("cai-input-again").unwrap()["status"],
        "failed",
        "{runs}"
    );
    assert_eq!(row("cai-input").unwrap()["status"], "succeeded", "{runs}");
    let elsewhere = adopt(
        &started
            .execution_arn()
            .replace(":execution:", ":execution:other-"),
    );
    let stderr = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(
        !elsewhere.status.success() && stderr.contains("DescribeExecution"),
        "{stderr}"
    );
    assert_eq!(
        status_when_done(&store, &client, started.execution_arn(), 120),
        "SUCCEEDED"
    );
    let summary: Value =
        serde_json::from_slice(&store.get("results/cai-input/summary.json").unwrap()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["objects"], 8, "{summary}");
    let combined: Value =
        serde_json::from_slice(&store.get("results/cai-input/combined_data.json").unwrap())
            .unwrap();
    let read: Vec<&str> = combined
        .as_array()
        .unwrap()
        .iter()
        // One file a rank: a key, as CAI writes it.
        .map(|r| r["data_path"].as_str().unwrap())
        .collect();
    assert_eq!(read, ["cai-data/p0.pt", "cai-data/p1.pt"]);
    // Each file's objects under the ids its conversion would give, at PyTorch's redshifts.
    let expected = common::astromae_expected();
    let bytes = store
        .get("results/cai-input/predictions/0.safetensors")
        .unwrap();
    let p = cosmicai_engine::pipeline::read_predictions(&bytes).unwrap();
    for (row, (id, q)) in p.object_id.iter().zip(&p.predicted).enumerate() {
        assert_eq!(*id, cosmicai_engine::cai::cai_object_id("p0.pt", row));
        assert!((q.redshift - expected[row]).abs() <= 1e-4, "row {row}");
    }
}

#[test]
fn data_already_in_the_bucket_runs_where_it_is_from_the_launcher() {
    // CAI's `.pt` partitions and checkpoint already in the stack's bucket: the
    // launcher plans over the bucket, uploads nothing, and follows the run as any.
    let Some(bin) = venv_bin() else { return };
    let (stack, store, _client, arn) = deployed(&bin, "cosmicai-in-bucket");
    let partition = std::fs::read(common::astromae_fixture("partition.pt")).unwrap();
    store.put("lake/cai/p0.pt", &partition).unwrap();
    store.put("lake/cai/p1.pt", &partition).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Only where results and the registry go: made by the run.
    let home = tmp.path().join("home");
    let s3_data = format!("S3://{BUCKET}/lake/cai/");
    // The checkpoint is a local file: it goes up by itself, named by its hash.
    let weights = common::astromae_fixture("astromae_module.pt");
    let model = format!("astromae:{}", weights.display());
    let out = aws_run(
        &stack,
        &arn,
        &home,
        &[
            "--s3-data",
            &s3_data,
            "--model",
            &model,
            "--world-size",
            "2",
            "--batch-size",
            "3",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "s3://{BUCKET}/lake/cai: 2 partition files ({} bytes) run where they are; nothing uploaded",
            2 * partition.len()
        )),
        "{stderr}"
    );
    let uploaded = stderr
        .lines()
        .find_map(|l| l.split(&format!("uploaded to s3://{BUCKET}/")).nth(1))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default()
        .to_string();
    assert!(
        uploaded.starts_with("models/astromae_module-") && uploaded.ends_with(".pt"),
        "{stderr}"
    );
    assert_eq!(
        store.get(&uploaded).unwrap(),
        std::fs::read(&weights).unwrap()
    );
    let s = last_json_line(&out);
    assert_eq!(
        (
            s["status"].as_str(),
            s["objects"].as_u64(),
            s["ranks"].as_u64()
        ),
        (Some("succeeded"), Some(8), Some(2)),
        "{s}"
    );
    assert_eq!(
        s["model"].as_str(),
        Some(format!("astromae:{uploaded}").as_str())
    );
    // No partition went up: the bucket holds the data, the model, the run's results
    // and the Distributed Map's manifest (its ResultWriter's).
    let keys: Vec<String> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
    let run_id = s["run_id"].as_str().unwrap();
    let result_path = s["result_path"].as_str().unwrap();
    assert!(
        keys.iter().all(|k| k.starts_with("lake/cai/")
            || *k == uploaded
            || k.starts_with(&format!("{result_path}/"))
            || k.starts_with("results/map-results/")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("{result_path}/")))
    );
    // The results came back beside the registry, which lists the run.
    let combined = home.join(result_path).join("combined_data.json");
    assert!(combined.is_file(), "{}", combined.display());
    let runs = common::ok_json(&["runs", "--data", &home.display().to_string(), "--json"]);
    assert_eq!(
        (runs[0]["id"].as_str(), runs[0]["status"].as_str()),
        (Some(run_id), Some("succeeded")),
        "{runs}"
    );
    // A second run finds the weights already there.
    let again = aws_run(
        &stack,
        &arn,
        &home,
        &[
            "--s3-data",
            "lake/cai",
            "--model",
            &model,
            "--world-size",
            "1",
            "--batch-size",
            "8",
        ],
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("already in s3://{BUCKET}/{uploaded}")),
        "{stderr}"
    );
    // The deployment's results are never data: past runs' predictions would be
    // planned as partitions. Initialize refuses the run by name (a stray file
    // there gets the launcher's own plan past "no partition files").
    store
        .put("results/stray/part.safetensors", b"not data")
        .unwrap();
    let results = aws_run(
        &stack,
        &arn,
        &home,
        &[
            "--s3-data",
            "results",
            "--world-size",
            "1",
            "--batch-size",
            "8",
        ],
    );
    let stderr = String::from_utf8_lossy(&results.stderr);
    assert!(!results.status.success());
    assert!(
        stderr.contains("data_prefix 'results' is inside 'results/'"),
        "{stderr}"
    );
}

#[test]
fn s3_data_outside_the_stacks_bucket_or_without_aws_is_refused_by_name() {
    // Refused before any connection: no stack needed.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().display().to_string();
    let refusal = |s3_data: &str| {
        let out = aws_env(Command::new(env!("CARGO_BIN_EXE_cosmicai")))
            .args([
                "run", "--target", "aws", "--data", &home, "--bucket", BUCKET,
            ])
            .args([
                "--state-machine-arn",
                "arn:aws:states:us-east-1:123456789012:stateMachine:c",
            ])
            .args([
                "--world-size",
                "1",
                "--batch-size",
                "8",
                "--s3-data",
                s3_data,
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let stderr = refusal("s3://cai-data-bucket/runs/1");
    assert!(
        stderr.contains(&format!(
            "its own bucket, {BUCKET}, only; copy the data in first (aws s3 sync s3://cai-data-bucket/runs/1 s3://{BUCKET}/runs/1)"
        )),
        "{stderr}"
    );
    for whole in [
        format!("s3://{BUCKET}"),
        format!("s3://{BUCKET}/"),
        "/".into(),
    ] {
        let stderr = refusal(&whole);
        assert!(
            stderr.contains("names the whole bucket"),
            "{whole}: {stderr}"
        );
    }
    let stderr = refusal("s3://cai-data-bucket");
    assert!(
        stderr.contains("aws s3 sync s3://cai-data-bucket/FOLDER"),
        "{stderr}"
    );
    let stderr = refusal("lake/../../etc");
    assert!(
        stderr.contains("--s3-data 'lake/../../etc' contains '..'"),
        "{stderr}"
    );
    let local = cosmicai(&[
        "run",
        "--data",
        &home,
        "--world-size",
        "1",
        "--batch-size",
        "8",
        "--s3-data",
        "lake",
    ]);
    let stderr = String::from_utf8_lossy(&local.stderr);
    assert!(!local.status.success());
    assert!(
        stderr.contains("--s3-data") && stderr.contains("--target aws"),
        "{stderr}"
    );
}
