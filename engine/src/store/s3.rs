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
/// Part size of multipart uploads (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Where and how to reach the bucket.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    pub region: Option<String>,
    /// A non-AWS endpoint, e.g. `http://127.0.0.1:9000`; path-style addressing is used then.
    pub endpoint: Option<String>,
    /// Static credentials (tests, local servers); `None` uses the AWS provider chain.
    pub static_credentials: Option<(String, String)>,
}

pub struct S3Store {
    client: Client,
    shared: aws_config::SdkConfig,
    bucket: String,
    runtime: tokio::runtime::Runtime,
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

    async fn put_multipart(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
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
        for (i, chunk) in bytes.chunks(PART_SIZE).enumerate() {
            let number = i as i32 + 1;
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(chunk.to_vec()))
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

/// The ETag S3 gives `len` bytes read from `reader` when this store puts them:
/// their MD5 in one part, or, above [`MULTIPART_THRESHOLD`], the MD5 of the
/// [`PART_SIZE`] parts' MD5s and the part count (objects encrypted with SSE-S3,
/// as the template's bucket is). A local file whose ETag matches the object's is
/// the same bytes, where a size alone is not.
pub fn etag_of(mut reader: impl std::io::Read, len: u64) -> std::io::Result<String> {
    use md5::{Digest, Md5};
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let multipart = len > MULTIPART_THRESHOLD as u64;
    let mut part = vec![0u8; PART_SIZE];
    let mut parts = Md5::new();
    let (mut count, mut whole) = (0usize, Md5::new());
    loop {
        let mut filled = 0;
        while filled < PART_SIZE {
            match reader.read(&mut part[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        if multipart {
            parts.update(Md5::digest(&part[..filled]));
        } else {
            whole.update(&part[..filled]);
        }
        count += 1;
        if filled < PART_SIZE {
            break;
        }
    }
    Ok(if multipart {
        format!("{}-{count}", hex(&parts.finalize()))
    } else {
        hex(&whole.finalize())
    })
}

impl S3Store {
    /// The objects under `prefix` (a folder) with their ETags, quotes removed.
    pub fn list_with_etags(&self, prefix: &str) -> Result<Vec<(StoreObject, String)>, StoreError> {
        let prefix = checked(prefix)?;
        // A folder: "a" lists "a/..." not "ab".
        let folder = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        self.block_on(async {
            let mut out = Vec::new();
            let mut token = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&folder)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(|e| self.error(prefix, sdk(&e)))?;
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
                token = page.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            out.sort_by(|a, b| a.0.key.cmp(&b.0.key));
            Ok(out)
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
        let key = checked(key)?;
        self.block_on(async {
            let mut object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| {
                    if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                        StoreError::NotFound {
                            key: key.into(),
                            store: self.describe(),
                        }
                    } else {
                        self.error(key, sdk(&e))
                    }
                })?;
            let mut copied = 0u64;
            while let Some(chunk) = object.body.next().await {
                let chunk = chunk.map_err(|e| self.error(key, e))?;
                out.write_all(&chunk).map_err(|source| StoreError::Io {
                    key: key.to_string(),
                    source,
                })?;
                copied += chunk.len() as u64;
            }
            Ok(copied)
        })
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let key = checked(key)?;
        self.block_on(async {
            if bytes.len() > MULTIPART_THRESHOLD {
                return self.put_multipart(key, bytes).await;
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
