//! An S3 bucket as a store, through aws-sdk-s3: AWS itself or any S3-compatible
//! endpoint. Credentials come from the standard AWS provider chain unless given.
//!
//! The store's methods are blocking (the pipeline is synchronous); it owns a
//! small tokio runtime. Call it from plain threads, not from inside async code.

use super::{ObjectStore, StoreError, StoreObject};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use cosmicai_shared::run::check_key;
use std::path::PathBuf;

/// Objects larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Part size of multipart uploads (S3's minimum is 5 MiB), for objects up to
/// [`MAX_PARTS`] of them (78 GiB); larger ones take larger parts ([`part_size`]).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// S3's most parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
/// S3's largest object (5 TiB).
pub const MAX_OBJECT: u64 = 5 << 40;

/// The part size this store uploads `len` bytes with: [`PART_SIZE`], or as many
/// whole MiB as keep the parts within [`MAX_PARTS`].
pub fn part_size(len: u64) -> usize {
    const MIB: u64 = 1 << 20;
    let least = len.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    least.max(PART_SIZE as u64) as usize
}

/// Where and how to reach the bucket.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    pub region: Option<String>,
    /// A non-AWS endpoint, e.g. `http://127.0.0.1:9000`; path-style addressing is used then.
    pub endpoint: Option<String>,
    /// Static credentials (tests, local servers); `None` uses the AWS provider chain.
    pub static_credentials: Option<(String, String)>,
    /// A folder left out of listings of the folders above it (the deployment's
    /// results: every past run's files, which grow with each run and hold no
    /// partition). Listed as usual when a listing is of it or within it.
    pub unlisted: Option<String>,
}

pub struct S3Store {
    client: Client,
    shared: aws_config::SdkConfig,
    bucket: String,
    runtime: tokio::runtime::Runtime,
    /// [`S3Config::unlisted`], as a folder (`results/`).
    unlisted: Option<String>,
}

/// `prefix` as a folder: "a" lists "a/..." not "ab"; "" is the whole bucket.
fn as_folder(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    }
}

impl S3Store {
    pub fn connect(config: S3Config) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io {
                key: String::new(),
                source: e,
            })?;
        // rustls with ring: no aws-lc C build (see README).
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let region = Region::new(config.region.clone().unwrap_or_else(|| "us-east-1".into()));
        let shared = runtime.block_on(async {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http)
                .region(region);
            if let Some((key, secret)) = &config.static_credentials {
                loader = loader.credentials_provider(Credentials::new(
                    key,
                    secret,
                    None,
                    None,
                    "cosmicai-static",
                ));
            }
            loader.load().await
        });
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(endpoint) = &config.endpoint {
            s3 = s3.endpoint_url(endpoint).force_path_style(true);
        }
        Ok(S3Store {
            client: Client::from_conf(s3.build()),
            shared,
            bucket: config.bucket,
            runtime,
            unlisted: config
                .unlisted
                .map(|u| as_folder(u.trim_matches('/')))
                .filter(|u| !u.is_empty()),
        })
    }

    /// The underlying client (the launcher creates buckets and checks access with it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The region, credentials and HTTPS client the store was made with, for other
    /// AWS clients (the launcher's Step Functions client).
    pub fn sdk_config(&self) -> &aws_config::SdkConfig {
        &self.shared
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The region S3 says the bucket is in (HeadBucket's `x-amz-bucket-region`,
    /// which S3 sends on a redirect or a refusal too), or `None` where it says
    /// none: a bucket in another region than the client's is answered
    /// `PermanentRedirect`, so a run asks before it reads one it was only named.
    fn bucket_region(&self) -> Option<String> {
        self.block_on(async {
            match self.client.head_bucket().bucket(&self.bucket).send().await {
                Ok(out) => out.bucket_region().map(str::to_string),
                Err(e) => e
                    .raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region"))
                    .map(str::to_string),
            }
        })
    }

    /// The region the bucket is in and the one this store's client signs for,
    /// where S3 says they differ: S3 would answer every read `PermanentRedirect`
    /// (and reads across regions are billed per GB). `None` where they match,
    /// or where either is unknown (an emulator naming none: the reads will tell).
    pub fn in_another_region(&self) -> Option<(String, &str)> {
        let ours = self.region()?;
        let theirs = self.bucket_region()?;
        (theirs != ours).then_some((theirs, ours))
    }

    /// The region the store's client signs for, where one is set.
    pub fn region(&self) -> Option<&str> {
        self.shared.region().map(|r| r.as_ref())
    }

    /// Runs `future` on the store's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn error(&self, key: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            key: key.into(),
            source: std::io::Error::other(format!("s3://{}: {e}", self.bucket)),
        }
    }

    /// Uploads in parts, each asked of `next_part` when the one before has gone
    /// (`None`: no more), so only one part is held at a time.
    async fn put_multipart(
        &self,
        key: &str,
        mut next_part: impl FnMut() -> Result<Option<Vec<u8>>, StoreError>,
    ) -> Result<(), StoreError> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(key, sdk(&e)))?;
        let id = upload
            .upload_id()
            .ok_or_else(|| self.error(key, "no upload id"))?;
        let mut parts = Vec::new();
        loop {
            let chunk = match next_part() {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    self.abort_multipart(key, id).await;
                    return Err(e);
                }
            };
            let number = parts.len() as i32 + 1;
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(chunk))
                .send()
                .await;
            match part {
                Ok(p) => parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(p.e_tag().map(str::to_string))
                        .build(),
                ),
                Err(e) => {
                    self.abort_multipart(key, id).await;
                    return Err(self.error(key, sdk(&e)));
                }
            }
        }
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        if let Err(e) = completed {
            self.abort_multipart(key, id).await;
            return Err(self.error(key, sdk(&e)));
        }
        Ok(())
    }

    /// Leaves no half upload behind: its parts are billed as storage until aborted
    /// (the bucket's lifecycle rule aborts what this misses, after days).
    async fn abort_multipart(&self, key: &str, id: &str) {
        let _ = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .send()
            .await;
    }
}

/// An SDK error with its service code and message, not just "service error"
/// (any AWS SDK client's: S3 here, Step Functions in the launcher).
pub fn sdk<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            // Some S3-compatible servers (moto) send an empty code.
            s.code().filter(|c| !c.is_empty()).unwrap_or("error"),
            s.message().unwrap_or("no message")
        ),
        None => aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}

fn checked(key: &str) -> Result<&str, StoreError> {
    check_key(key).map_err(|p| StoreError::BadKey {
        key: key.into(),
        problem: p.into(),
    })?;
    Ok(key)
}

/// The ETag S3 gives `len` bytes when this store puts them: their MD5 in one
/// part, or, above [`MULTIPART_THRESHOLD`], the MD5 of the [`part_size`] parts'
/// MD5s and the part count (objects encrypted with SSE-S3, as the template's
/// bucket is). A local file whose ETag matches the object's is the same bytes,
/// where a size alone is not.
pub struct Etag {
    multipart: bool,
    whole: md5::Md5,
    parts: md5::Md5,
    count: usize,
}

impl Etag {
    pub fn new(len: u64) -> Self {
        use md5::Digest;
        Etag {
            multipart: len > MULTIPART_THRESHOLD as u64,
            whole: md5::Md5::new(),
            parts: md5::Md5::new(),
            count: 0,
        }
    }

    /// The next part, as the store cuts them.
    pub fn part(&mut self, bytes: &[u8]) {
        use md5::Digest;
        if self.multipart {
            self.parts.update(md5::Md5::digest(bytes));
        } else {
            self.whole.update(bytes);
        }
        self.count += 1;
    }

    pub fn finish(self) -> String {
        use md5::Digest;
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        if self.multipart {
            format!("{}-{}", hex(&self.parts.finalize()), self.count)
        } else {
            hex(&self.whole.finalize())
        }
    }
}

/// The [`Etag`] of `len` bytes read from `reader` (which must hold that many).
pub fn etag_of(mut reader: impl std::io::Read, len: u64) -> std::io::Result<String> {
    let mut etag = Etag::new(len);
    let mut buffer = Vec::new();
    let mut left = len;
    while let Some(part) = next_part(&mut reader, &mut left, len, &mut buffer)? {
        etag.part(part);
    }
    Ok(etag.finish())
}

/// The next part of a `len`-byte stream with `left` bytes to go: all of it up
/// to [`MULTIPART_THRESHOLD`], else [`part_size`] bytes; `None` at the end. A
/// stream that ends early is an error: the file changed as it was read.
fn next_part<'a>(
    reader: &mut impl std::io::Read,
    left: &mut u64,
    len: u64,
    buffer: &'a mut Vec<u8>,
) -> std::io::Result<Option<&'a [u8]>> {
    if *left == 0 {
        // Past its length, the stream must have ended: a file that grew as it
        // was read would otherwise go up cut at its planned size.
        let mut more = [0u8; 1];
        return match reader.read(&mut more)? {
            0 => Ok(None),
            _ => Err(std::io::Error::other(format!(
                "grew past its {len} bytes: it changed while it was read"
            ))),
        };
    }
    let size = if len > MULTIPART_THRESHOLD as u64 {
        part_size(len) as u64
    } else {
        len
    }
    .min(*left) as usize;
    buffer.resize(size, 0);
    reader.read_exact(buffer).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => std::io::Error::other(format!(
            "ended before its {len} bytes: it changed while it was read"
        )),
        _ => e,
    })?;
    *left -= size as u64;
    Ok(Some(&buffer[..]))
}

impl S3Store {
    /// Deletes `key` (S3 answers a missing key as deleted too).
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let key = checked(key)?;
        self.block_on(async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| self.error(key, sdk(&e)))?;
            Ok(())
        })
    }

    /// Streams the `len` bytes of `reader` to `key`, one part at a time, so an
    /// object of any size takes one part's memory (8 MiB up to 78 GiB); returns
    /// their [`Etag`], worked out on the way. A `reader` shorter than `len` (a
    /// file cut as it was read) fails, and leaves no object behind.
    pub fn put_from(
        &self,
        key: &str,
        mut reader: impl std::io::Read,
        len: u64,
    ) -> Result<String, StoreError> {
        let key = checked(key)?;
        if len > MAX_OBJECT {
            return Err(self.error(
                key,
                format!("{len} bytes: past S3's largest object (5 TiB); split it"),
            ));
        }
        let io = |source| StoreError::Io {
            key: key.to_string(),
            source,
        };
        let mut etag = Etag::new(len);
        let (mut left, mut buffer) = (len, Vec::new());
        if len <= MULTIPART_THRESHOLD as u64 {
            let whole = next_part(&mut reader, &mut left, len, &mut buffer)
                .map_err(io)?
                .is_some();
            // The end of the stream, checked before anything is sent.
            next_part(&mut reader, &mut left, len, &mut buffer).map_err(io)?;
            let bytes = if whole { &buffer[..] } else { &[][..] };
            etag.part(bytes);
            self.put(key, bytes)?;
            return Ok(etag.finish());
        }
        self.block_on(self.put_multipart(key, || {
            let part = next_part(&mut reader, &mut left, len, &mut buffer).map_err(io)?;
            Ok(part.map(|bytes| etag.part(bytes)).map(|()| {
                // The part's buffer goes with it, not a copy.
                std::mem::take(&mut buffer)
            }))
        }))?;
        Ok(etag.finish())
    }

    /// The objects under `prefix` (a folder) with their ETags, quotes removed.
    pub fn list_with_etags(&self, prefix: &str) -> Result<Vec<(StoreObject, String)>, StoreError> {
        let prefix = checked(prefix)?;
        let folder = as_folder(prefix);
        let mut out = match &self.unlisted {
            // The unlisted folder is below this one: walk down to it, folder by
            // folder, and list every other folder whole.
            Some(unlisted) if unlisted.starts_with(&folder) && *unlisted != folder => {
                self.list_around(&folder, unlisted)?
            }
            _ => self.list_pages(&folder, false)?.0,
        };
        out.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        Ok(out)
    }

    /// Everything under `folder` but `unlisted` (a folder below it).
    fn list_around(
        &self,
        folder: &str,
        unlisted: &str,
    ) -> Result<Vec<(StoreObject, String)>, StoreError> {
        let (mut out, mut folders) = self.list_pages(folder, true)?;
        // S3 names each subfolder once; a server that repeats one across pages
        // must not have it listed (and its partitions planned) twice.
        folders.sort_unstable();
        folders.dedup();
        for sub in folders {
            if sub == unlisted {
                continue;
            }
            let mut objects = if unlisted.starts_with(&sub) {
                self.list_around(&sub, unlisted)?
            } else {
                self.list_pages(&sub, false)?.0
            };
            out.append(&mut objects);
        }
        Ok(out)
    }

    /// One listing of `folder`, page by page: its objects with their ETags
    /// (quotes removed), and with `delimited` its subfolders apart (unlisted).
    #[allow(clippy::type_complexity)]
    fn list_pages(
        &self,
        folder: &str,
        delimited: bool,
    ) -> Result<(Vec<(StoreObject, String)>, Vec<String>), StoreError> {
        self.block_on(async {
            let (mut out, mut folders) = (Vec::new(), Vec::new());
            let mut token = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(folder)
                    .set_delimiter(delimited.then(|| "/".to_string()))
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(|e| self.error(folder, sdk(&e)))?;
                for o in page.contents() {
                    if let Some(key) = o.key() {
                        let object = StoreObject {
                            key: key.to_string(),
                            size: o.size().unwrap_or(0).max(0) as u64,
                        };
                        out.push((
                            object,
                            o.e_tag().unwrap_or("").trim_matches('"').to_string(),
                        ));
                    }
                }
                folders.extend(
                    page.common_prefixes()
                        .iter()
                        .filter_map(|p| p.prefix().map(str::to_string)),
                );
                token = page.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            Ok((out, folders))
        })
    }

    /// Whether object `key` exists (HeadObject: neither a listing nor the object's bytes).
    pub fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let key = checked(key)?;
        self.block_on(async {
            match self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
                Err(e) => Err(self.error(key, sdk(&e))),
            }
        })
    }
}

impl S3Store {
    /// GetObject of `key` (of `range` only, where given; of the object whose
    /// ETag is `if_match` only, where given) copied into `out`, in the chunks it arrives in; the
    /// bytes copied and the ETag read.
    fn read_to(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
        if_match: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> Result<(u64, Option<String>), StoreError> {
        let key = checked(key)?;
        // RFC 9110's last-byte-pos is inclusive; S3 gives the whole of a shorter object.
        let header = range
            .as_ref()
            .map(|r| format!("bytes={}-{}", r.start, r.end - 1));
        let mut out = super::Capped {
            inner: out,
            left: range.map_or(u64::MAX, |r| r.end - r.start),
        };
        self.block_on(async {
            let mut object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .set_range(header)
                .set_if_match(if_match.map(str::to_string))
                .send()
                .await
                .map_err(|e| {
                    if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                        StoreError::NotFound {
                            key: key.into(),
                            store: self.describe(),
                        }
                    } else if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) {
                        // If-Match failed: another object is at the key now.
                        StoreError::Changed {
                            key: key.into(),
                            store: self.describe(),
                        }
                    } else {
                        self.error(key, sdk(&e))
                    }
                })?;
            let etag = object.e_tag.take();
            let mut copied = 0u64;
            while let Some(chunk) = object.body.next().await {
                let chunk = chunk.map_err(|e| self.error(key, e))?;
                std::io::Write::write_all(&mut out, &chunk).map_err(|source| StoreError::Io {
                    key: key.to_string(),
                    source,
                })?;
                copied += chunk.len() as u64;
            }
            Ok((copied, etag))
        })
    }
}

impl ObjectStore for S3Store {
    fn list(&self, prefix: &str) -> Result<Vec<StoreObject>, StoreError> {
        Ok(self
            .list_with_etags(prefix)?
            .into_iter()
            .map(|(object, _)| object)
            .collect())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        self.get_to(key, &mut bytes)?;
        Ok(bytes)
    }

    fn get_to(&self, key: &str, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
        Ok(self.read_to(key, None, None, out)?.0)
    }

    fn get_range_to(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, StoreError> {
        Ok(self.get_range_if_match(key, range, None, out)?.0)
    }

    fn get_range_if_match(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        if_match: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> Result<(u64, Option<String>), StoreError> {
        if range.is_empty() {
            return Ok((0, if_match.map(str::to_string)));
        }
        self.read_to(key, Some(range), if_match, out)
    }

    /// A conditional PUT, `If-None-Match: *` (S3 answers 412 where there is one).
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        let key = checked(key)?;
        self.block_on(async {
            let put = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .if_none_match("*")
                .body(ByteStream::from(bytes.to_vec()))
                .send()
                .await;
            match put {
                Ok(_) => Ok(true),
                // 412 Precondition Failed: there is one.
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(false),
                Err(e) => Err(self.error(key, sdk(&e))),
            }
        })
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let key = checked(key)?;
        self.block_on(async {
            if bytes.len() > MULTIPART_THRESHOLD {
                let mut parts = bytes.chunks(part_size(bytes.len() as u64));
                return self
                    .put_multipart(key, || Ok(parts.next().map(<[u8]>::to_vec)))
                    .await;
            }
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(bytes.to_vec()))
                .send()
                .await
                .map_err(|e| self.error(key, sdk(&e)))?;
            Ok(())
        })
    }

    fn local_path(&self, _key: &str) -> Option<PathBuf> {
        None
    }

    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_within_s3s_count_up_to_its_largest_object() {
        const MIB: u64 = 1 << 20;
        // 8 MiB parts up to 10,000 of them (78 GiB): CAI's partitions.
        for len in [0, 100_000_000, MAX_PARTS * PART_SIZE as u64] {
            assert_eq!(part_size(len), PART_SIZE, "{len}");
        }
        // Past that, whole MiB, as few as keep the count at 10,000 at most.
        for len in [
            MAX_PARTS * PART_SIZE as u64 + 1,
            100 << 30,
            1 << 40,
            MAX_OBJECT,
        ] {
            let size = part_size(len) as u64;
            assert_eq!(size % MIB, 0, "{len}");
            assert!(len.div_ceil(size) <= MAX_PARTS, "{len}: {size}");
            assert!(
                len.div_ceil(size - MIB) > MAX_PARTS,
                "{len}: {size} is not the least"
            );
        }
    }

    #[test]
    fn the_etag_is_cut_in_the_parts_the_store_sends() {
        // 20 MB: two 8 MiB parts and a rest, as `put` and `put_from` send it.
        let bytes: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut by_hand = Etag::new(bytes.len() as u64);
        for part in bytes.chunks(PART_SIZE) {
            by_hand.part(part);
        }
        let by_hand = by_hand.finish();
        assert!(by_hand.ends_with("-3"), "{by_hand}");
        assert_eq!(etag_of(&bytes[..], bytes.len() as u64).unwrap(), by_hand);
        // One part: the plain MD5 (of nothing, for an empty object).
        assert_eq!(
            etag_of(&b""[..], 0).unwrap(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        // A reader shorter or longer than its length: named.
        let err = etag_of(&bytes[..100], 1000).unwrap_err();
        assert!(
            err.to_string().contains("changed while it was read"),
            "{err}"
        );
        for len in [0, 1000, bytes.len() as u64 - 1] {
            let err = etag_of(&bytes[..], len).unwrap_err();
            assert!(err.to_string().contains("grew past its"), "{len}: {err}");
        }
    }
}
