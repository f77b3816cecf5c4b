//! `cosmicai serve` as a browser or script sees it: a real server process on a
//! free port, spoken to over TCP with plain HTTP/1.1.

mod archive;
#[path = "../common/mod.rs"]
mod common;
mod guard;
mod lifecycle;
mod objects;
mod runs;
mod sweeps;
use common::asset;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

struct Server {
    child: Child,
    /// host:port to connect to.
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data directory filled by one first start, shared by every test of this binary.
/// Statics are never dropped, so a temporary directory would outlive every run (and
/// at 270 MB fill a reused CI machine): one fixed place under cargo's scratch space,
/// emptied each time, holds it instead.
fn data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-data");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        drop(start_in(&dir, "127.0.0.1:0", &[]));
        dir
    })
}

fn start_in(dir: &Path, addr: &str, envs: &[(&str, &str)]) -> Server {
    start_with(dir, addr, envs, &[])
}

fn start_with(dir: &Path, addr: &str, envs: &[(&str, &str)], args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cosmicai"))
        .args(["serve", "--addr", addr, "--data-dir"])
        .arg(dir)
        .args(args)
        .args([
            "--assets",
            &asset(""),
            "--frontend",
            "/nonexistent-frontend",
        ])
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::serving_addr(&mut child);
    Server { child, addr }
}

fn start() -> Server {
    start_in(data_dir(), "127.0.0.1:0", &[])
}

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

fn request(s: &Server, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(&s.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        head += &format!("Host: {}\r\n", s.addr);
    }
    for h in headers {
        head += &format!("{h}\r\n");
    }
    head += "\r\n";
    // A server that refuses a body (413) may answer and close before it is
    // all sent: the write then fails, and the answer is still there to read.
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    match (sent, read) {
        (Ok(()), read) => read.map(drop).unwrap(),
        (Err(e), _) if raw.is_empty() => panic!("{method} {path}: {e}"),
        (Err(_), _) => {}
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete reply");
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = headers[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = unchunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 4 + size..];
    }
    out
}

fn get(s: &Server, path: &str) -> Reply {
    request(s, "GET", path, &[], b"")
}

fn post(s: &Server, path: &str, body: &str, headers: &[&str]) -> Reply {
    let mut all = vec!["Content-Type: application/json"];
    all.extend_from_slice(headers);
    request(s, "POST", path, &all, body.as_bytes())
}

/// Every error is JSON with a message.
fn assert_json_error(r: &Reply, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let message = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

/// The id in a 202 reply (a run or sweep created).
fn accepted_id(reply: &Reply) -> String {
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["id"].as_str().unwrap().to_string()
}

/// Each SSE event of `body` as (id, data).
fn sse_events(body: &[u8]) -> Vec<(Option<usize>, Value)> {
    let text = String::from_utf8_lossy(body);
    let mut events = Vec::new();
    let mut id = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("data: ") {
            events.push((id.take(), serde_json::from_str(v).unwrap()));
        }
    }
    events
}

/// The shared data's datasets, copied into `to` for a server of its own: not
/// its registry or results, which other tests' runs write to meanwhile (a file
/// renamed away mid-copy would fail the copy).
fn copy_datasets(to: &Path) {
    for folder in ["catalog", "real", "synthetic"] {
        copy_tree(&data_dir().join(folder), &to.join(folder));
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A partition of galaxies `ids` with `height x width` cutouts at `path`.
fn write_test_partition(path: &Path, ids: &[i64], (height, width): (usize, usize)) {
    use cosmicai_engine::partition::{
        Images, ObjectRow, Partition, PartitionMeta, Source, write_partition,
    };
    let mut partition = Partition::new(
        PartitionMeta::default(),
        vec![Source {
            name: "test".into(),
            provenance: cosmicai_shared::Provenance::Real,
            detail: "a partition written by a test".into(),
        }],
    );
    for &object_id in ids {
        let row = ObjectRow {
            object_id,
            ra: 10.0,
            dec: 1.0,
            magnitudes: [19.0, 18.0, 17.5, 17.2, 17.0],
            redshift: 0.1,
            class: cosmicai_shared::Class::Galaxy,
        };
        partition.push(row, 0);
    }
    partition.images = Some(Images {
        height,
        width,
        pixels: vec![1.0; ids.len() * 5 * height * width],
    });
    write_partition(path, &partition).unwrap();
}
