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
mod run;
mod upload;

pub use config::{AwsConfig, execution_state_machine};
pub use etags::LocalEtags;
pub use follow::{LostContact, follow, refuse_if_busy, start_and_follow};
pub use run::execute_on_aws;
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
    pub fn connect(config: AwsConfig) -> Result<Self> {
        let s3 = S3Store::connect(S3Config {
            bucket: config.bucket.clone(),
            region: config.region.clone(),
            endpoint: config.endpoint.clone(),
            static_credentials: None,
            unlisted: None,
        })
        .with_context(|| format!("connecting to s3://{}", config.bucket))?;
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

/// An SDK error as `Code: message` (shared with the S3 store).
pub use cosmicai_engine::store::s3::sdk as sdk_error;

/// The folder of the stack's `bucket` that `given` names (`FOLDER`, or
/// `s3://BUCKET/FOLDER` with BUCKET the stack's), for partitions already there;
/// `what` names the input in errors (`--s3-data`, `s3_data`). Another bucket is
/// refused with the copy to make, as is the whole bucket (it holds checkpoints
/// and past runs beside the data) and any key that leaves its folder.
pub fn folder_in_bucket(what: &str, given: &str, bucket: &str) -> Result<String> {
    let url = given
        .get(..5)
        .filter(|scheme| scheme.eq_ignore_ascii_case("s3://"))
        .map(|_| &given[5..]);
    let folder = match url {
        Some(rest) => {
            let (other, folder) = rest.split_once('/').unwrap_or((rest, ""));
            if other != bucket {
                let folder = Some(folder.trim_matches('/'))
                    .filter(|f| !f.is_empty())
                    .unwrap_or("FOLDER");
                anyhow::bail!(
                    "{what} {given}: the stack's workers read its own bucket, {bucket}, only; copy the data in first (aws s3 sync s3://{other}/{folder} s3://{bucket}/{folder}) and give {what} {folder}"
                );
            }
            folder
        }
        None => given,
    };
    let folder = folder.trim_matches('/');
    if let Err(e) = cosmicai_shared::run::check_key(folder) {
        anyhow::bail!("{what} '{given}' {e}");
    }
    if folder.is_empty() {
        anyhow::bail!(
            "{what} '{given}' names the whole bucket: give the folder that holds the partitions"
        );
    }
    Ok(folder.to_string())
}
