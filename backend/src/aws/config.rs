//! Where the AWS deployment is: from flags, else the environment.

use anyhow::{Result, bail};

/// The deployment a run with target `aws` uses (the stack's outputs). Kept in the
/// registry with the execution's ARN, so a run can be followed again later; it
/// holds no credentials (those come from the provider chain only).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AwsConfig {
    /// `COSMICAI_AWS_BUCKET`: the stack's bucket (partitions and results).
    pub bucket: String,
    /// `COSMICAI_STATE_MACHINE_ARN`: the stack's state machine.
    pub state_machine_arn: String,
    /// `--region`, `AWS_REGION`, else the state machine's own (its ARN's), so
    /// a profile set to another region cannot send the calls elsewhere.
    pub region: Option<String>,
    /// `COSMICAI_AWS_ENDPOINT`: one endpoint for S3 and Step Functions instead of
    /// AWS (moto in the tests, LocalStack).
    pub endpoint: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The state machine of execution `arn`
/// (`arn:PARTITION:states:REGION:ACCOUNT:execution:MACHINE:NAME`).
pub fn execution_state_machine(arn: &str) -> Result<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        [
            "arn",
            partition,
            "states",
            region,
            account,
            "execution",
            machine,
            name,
        ] if !machine.is_empty() && !name.is_empty() => Ok(format!(
            "arn:{partition}:states:{region}:{account}:stateMachine:{machine}"
        )),
        _ => bail!(
            "--adopt '{arn}' is not a Step Functions execution ARN (arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME)"
        ),
    }
}

/// The region in a state machine's ARN (arn:PARTITION:states:REGION:ACCOUNT:stateMachine:NAME).
fn arn_region(arn: &str) -> Option<String> {
    let region = arn.split(':').nth(3)?;
    (!region.is_empty()).then(|| region.to_string())
}

impl AwsConfig {
    /// The configuration from the environment, or `None` when no deployment is named.
    pub fn from_env() -> Option<AwsConfig> {
        let state_machine_arn = env("COSMICAI_STATE_MACHINE_ARN")?;
        Some(AwsConfig {
            bucket: env("COSMICAI_AWS_BUCKET")?,
            region: env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .or_else(|| arn_region(&state_machine_arn)),
            state_machine_arn,
            endpoint: env("COSMICAI_AWS_ENDPOINT"),
        })
    }

    /// Flags first, then the environment; says what is missing.
    pub fn resolve(
        bucket: Option<String>,
        state_machine_arn: Option<String>,
        region: Option<String>,
        endpoint: Option<String>,
    ) -> Result<AwsConfig> {
        let bucket = bucket.or_else(|| env("COSMICAI_AWS_BUCKET"));
        let arn = state_machine_arn.or_else(|| env("COSMICAI_STATE_MACHINE_ARN"));
        let (Some(bucket), Some(state_machine_arn)) = (bucket, arn) else {
            bail!(
                "target aws needs the deployment: --bucket and --state-machine-arn (or COSMICAI_AWS_BUCKET and COSMICAI_STATE_MACHINE_ARN), the outputs of the stack in infra/aws/template.yaml"
            );
        };
        if !state_machine_arn.starts_with("arn:") || !state_machine_arn.contains(":stateMachine:") {
            bail!(
                "state machine ARN '{state_machine_arn}' is not a state machine ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME)"
            );
        }
        Ok(AwsConfig {
            bucket,
            region: region
                .or_else(|| env("AWS_REGION"))
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .or_else(|| arn_region(&state_machine_arn)),
            state_machine_arn,
            endpoint: endpoint.or_else(|| env("COSMICAI_AWS_ENDPOINT")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::arn_region;

    #[test]
    fn the_state_machines_region_is_read_from_its_arn() {
        let arn = "arn:aws:states:eu-west-2:123456789012:stateMachine:cosmicai-inference";
        assert_eq!(arn_region(arn).as_deref(), Some("eu-west-2"));
        assert_eq!(arn_region("arn:aws:states::1:stateMachine:x"), None);
        assert_eq!(arn_region("arn:aws"), None);
    }
}
