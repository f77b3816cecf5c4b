//! Fingerprints this crate's sources (`API_FINGERPRINT`): the server and the
//! explorer each carry the fingerprint of the types they were built with, so an
//! explorer built from other sources than its server can say so rather than
//! fail on a reply it cannot read.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=src");
    let mut files = Vec::new();
    collect(Path::new("src"), &mut files);
    files.sort();
    // FNV-1a over each file's path and bytes: stable across toolchains and
    // hosts (std's hasher promises neither), and enough to tell builds apart.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for file in &files {
        mix(file.to_string_lossy().replace('\\', "/").as_bytes());
        // Line endings as checked out (a Windows clone's CRLF) do not change the types.
        let text = std::fs::read(file).unwrap_or_default();
        let text: Vec<u8> = text.into_iter().filter(|&b| b != b'\r').collect();
        mix(&text);
    }
    println!("cargo:rustc-env=COSMICAI_API_FINGERPRINT={hash:016x}");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}
