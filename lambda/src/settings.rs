//! Where the handler finds S3: AWS in a deployment, another endpoint in tests.

use cosmicai_engine::store::s3::{S3Config, S3Store};

/// How the handler reaches S3: AWS itself (the default) or another endpoint in tests.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub region: Option<String>,
    /// `COSMICAI_S3_ENDPOINT`: an S3-compatible endpoint instead of AWS.
    pub endpoint: Option<String>,
    /// Static credentials (tests); `None` uses the Lambda role through the provider chain.
    pub static_credentials: Option<(String, String)>,
    /// `COSMICAI_RESULTS_PREFIX`: the deployment's results, left out of listings
    /// of the folders above it. A CAI payload's `data_prefix ""` lists the whole
    /// bucket, and every past run's files would grow that listing past what
    /// Initialize can read in its 15 minutes.
    pub results_prefix: Option<String>,
}

impl S3Settings {
    /// From the Lambda environment: `AWS_REGION` and, for tests, `COSMICAI_S3_ENDPOINT`.
    pub fn from_env() -> Self {
        S3Settings {
            region: std::env::var("AWS_REGION").ok(),
            endpoint: std::env::var("COSMICAI_S3_ENDPOINT").ok(),
            static_credentials: None,
            results_prefix: std::env::var("COSMICAI_RESULTS_PREFIX").ok(),
        }
    }

    pub(crate) fn connect(&self, bucket: &str) -> Result<S3Store, String> {
        self.connect_listing(bucket, self.results_prefix.clone())
    }

    /// A bucket of partitions read in place (the template's `InputBucket`): the
    /// deployment keeps no results there, so its listings leave nothing out.
    pub(crate) fn connect_data(&self, bucket: &str) -> Result<S3Store, String> {
        self.connect_listing(bucket, None)
    }

    fn connect_listing(&self, bucket: &str, unlisted: Option<String>) -> Result<S3Store, String> {
        if bucket == "local" || bucket.trim().is_empty() {
            return Err(format!(
                "bucket '{bucket}': a run on AWS reads its partitions from an S3 bucket; name it in the payload"
            ));
        }
        S3Store::connect(S3Config {
            bucket: bucket.into(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            static_credentials: self.static_credentials.clone(),
            unlisted,
        })
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_bucket_is_refused_before_any_connection() {
        let err = S3Settings::default().connect("local").err().unwrap();
        assert!(err.contains("bucket 'local'"), "{err}");
    }
}
