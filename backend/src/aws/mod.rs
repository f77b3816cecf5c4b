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

pub use config::AwsConfig;
pub use etags::LocalEtags;
pub use follow::{LostContact, follow, start_and_follow};
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
