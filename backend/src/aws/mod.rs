//! The AWS launcher: the same pipeline on Step Functions + Lambda.
//!
//! A run with target `aws` uploads the partitions its bucket lacks
//! ([`upload()`]), starts the state machine of `infra/aws/` with the CAI payload
//! as input (the execution is named after the run), then follows it
//! ([`follow()`]): execution status and history, the Distributed Map's item
//! counts, and the measures each rank writes, turned into the same events and
//! registry rows as a local run. At the end the results are copied from the
//! bucket into the local data directory, so every results view works unchanged.
//!
//! Credentials come from the standard AWS provider chain only; they are never
//! logged nor sent to the browser.

mod config;
mod etags;
mod follow;
mod resume;
mod run;
mod upload;

pub use config::{AwsConfig, execution_state_machine};
pub use etags::LocalEtags;
use follow::start_execution;
pub use follow::{LostContact, follow, refuse_if_busy, start_and_follow};
pub use resume::{AwsResumable, aws_resumable, resume_checked_on_aws, resume_on_aws};
pub use run::{Deployed, execute_on_aws};
pub use upload::{LocalWeights, upload, within};

use anyhow::{Context, Result};
use aws_sdk_sfn::Client as Sfn;
use cosmicai_engine::store::s3::{S3Config, S3Store};

/// Clients for the run's bucket and the state machine.
pub struct Aws {
    pub config: AwsConfig,
    pub s3: S3Store,
    pub sfn: Sfn,
}

impl Aws {
    /// A store of another bucket, reached as the stack's is (its region,
    /// credentials and endpoint): a CAI user's data bucket, read in place.
    pub fn other_bucket(&self, bucket: &str) -> Result<S3Store> {
        store_of(&self.config, bucket)
    }

    pub fn connect(config: AwsConfig) -> Result<Self> {
        let s3 = store_of(&config, &config.bucket)?;
        let mut sfn = aws_sdk_sfn::config::Builder::from(s3.sdk_config());
        if let Some(endpoint) = &config.endpoint {
            sfn = sfn.endpoint_url(endpoint);
        }
        Ok(Aws {
            sfn: Sfn::from_conf(sfn.build()),
            s3,
            config,
        })
    }
}

/// A store of `bucket` in `config`'s region, at its endpoint.
fn store_of(config: &AwsConfig, bucket: &str) -> Result<S3Store> {
    S3Store::connect(S3Config {
        bucket: bucket.into(),
        region: config.region.clone(),
        endpoint: config.endpoint.clone(),
        static_credentials: None,
        unlisted: None,
    })
    .with_context(|| format!("connecting to s3://{bucket}"))
}

/// An SDK error as `Code: message` (shared with the S3 store).
pub use cosmicai_engine::store::s3::sdk as sdk_error;

/// Partitions already in S3, run where they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataInS3 {
    /// Another bucket than the stack's, read in place (the template's
    /// `InputBucket`, which Initialize checks); `None` for the stack's own.
    pub bucket: Option<String>,
    /// The folder holding the partitions.
    pub folder: String,
}

/// The partitions `given` names: `FOLDER` in the stack's `bucket`, or
/// `s3://BUCKET/FOLDER` (another bucket read in place, a CAI user's data
/// bucket); `what` names the input in errors (`--s3-data`, `s3_data`). The
/// stack's whole bucket is refused (it holds checkpoints and past runs beside
/// the data), as is any key that leaves its folder; another bucket may be
/// given whole, as CAI's payload does (`data_prefix ""`).
pub fn data_in_s3(what: &str, given: &str, bucket: &str) -> Result<DataInS3> {
    let url = given
        .get(..5)
        .filter(|scheme| scheme.eq_ignore_ascii_case("s3://"))
        .map(|_| &given[5..]);
    let (other, folder) = match url {
        Some(rest) => {
            let (named, folder) = rest.split_once('/').unwrap_or((rest, ""));
            if named == bucket {
                (None, folder)
            } else {
                if let Err(e) = cosmicai_shared::run::check_bucket_name(named) {
                    anyhow::bail!("{what} '{given}': bucket '{named}' {e}");
                }
                (Some(named.to_string()), folder)
            }
        }
        None => (None, given),
    };
    let folder = folder.trim_matches('/');
    if let Err(e) = cosmicai_shared::run::check_key(folder) {
        anyhow::bail!("{what} '{given}' {e}");
    }
    if folder.is_empty() && other.is_none() {
        anyhow::bail!(
            "{what} '{given}' names the whole bucket: give the folder that holds the partitions"
        );
    }
    Ok(DataInS3 {
        bucket: other,
        folder: folder.to_string(),
    })
}
