//! Whether a worker's `/tmp` holds the partitions its rank reads whole: a model
//! that reads images (AstroMAE), and CAI's `.pt` files, download a partition
//! whole before reading it (one at a time). Lambda's `/tmp` is the function's
//! ephemeral storage (512 to 10,240 MB), so a plan with a partition larger than
//! that is refused before any rank is paid for, rather than every rank failing
//! (and being retried) at its first download.

use super::{Payload, PipelineError};
use cosmicai_shared::run::Device;

/// The most ephemeral storage (`/tmp`) a Lambda function can have.
pub const LAMBDA_MAX_STORAGE_MB: u32 = 10_240;

/// The workers' `/tmp` in MB as a state machine's definition gives it (the
/// template's `EphemeralStorageMB`), where it is a number Lambda allows (up to
/// its 10,240; a deployed template's is at least 512). The launcher and
/// Initialize read it alike.
pub fn storage_mb(text: &str) -> Option<u32> {
    text.trim()
        .parse()
        .ok()
        .filter(|mb| *mb <= LAMBDA_MAX_STORAGE_MB)
}

/// The share of the ephemeral storage a partition may take: the file system's
/// own use, and what a killed invocation may have left, take the rest.
const USABLE_SHARE: f64 = 0.9;

/// Refuses `payload` where one of its partitions read whole would not fit in
/// `storage_mb` of a Lambda worker's `/tmp`. GPU ranks run on AWS Batch, with
/// the instance's disk: not checked here.
pub fn check_room(payload: &Payload, storage_mb: u32) -> Result<(), PipelineError> {
    if payload.request.device != Device::Cpu {
        return Ok(());
    }
    let reads_images = matches!(
        payload.request.model_spec(),
        Ok(cosmicai_shared::model::ModelSpec::AstroMae(_))
    );
    let room = f64::from(storage_mb) * 1024.0 * 1024.0 * USABLE_SHARE;
    let largest = payload
        .files
        .iter()
        .filter(|(key, _)| reads_images || crate::cai::is_cai_key(key))
        .max_by_key(|(_, size)| *size);
    match largest {
        Some((key, size)) if *size as f64 > room => {
            let split = (room / 1024.0 / 1024.0 / 2.0).floor().max(1.0);
            // CAI's files are converted before they can be split.
            let how = if crate::cai::is_cai_key(key) {
                format!(
                    "`cosmicai partition import` them, then `cosmicai partition --size {split}MB`"
                )
            } else {
                format!("`cosmicai partition --size {split}MB`")
            };
            Err(PipelineError::Invalid(vec![format!(
                "partition {key} ({}) is read whole into a worker's /tmp, which holds {storage_mb} MB \
                 (the function's ephemeral storage): split the partitions smaller ({how}), or \
                 raise the template's EphemeralStorageMB",
                cosmicai_shared::size::format_size(*size),
            )]))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(model: &str, device: &str, files: &[(&str, u64)]) -> Payload {
        let request = serde_json::from_value(serde_json::json!({
            "batch_size": 512, "world_size": 1, "result_path": "results/r",
            "model": model, "device": device,
        }))
        .unwrap();
        Payload {
            run_id: "r".into(),
            request,
            files: files.iter().map(|(k, s)| (k.to_string(), *s)).collect(),
            ranks: vec![files.iter().map(|(k, _)| k.to_string()).collect()],
            bytes_per_object: None,
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_partition_read_whole_must_fit_in_tmp() {
        let gib = 1 << 30;
        let big = [("d/a.safetensors", 100), ("d/b.safetensors", gib)];
        // AstroMAE downloads it whole: 1 GiB does not fit in 512 MB, does in 2,048.
        let e = check_room(&payload("astromae:m.pt", "cpu", &big), 512).unwrap_err();
        let said = e.to_string();
        assert!(
            said.contains("d/b.safetensors") && said.contains("512 MB"),
            "{said}"
        );
        assert!(said.contains("--size 230MB"), "{said}");
        assert!(check_room(&payload("astromae:m.pt", "cpu", &big), 2048).is_ok());
        // PhotoZ reads only the catalog of a partition; CAI's `.pt` files whole.
        assert!(check_room(&payload("photoz", "cpu", &big), 512).is_ok());
        let pt = [("d/a.pt", gib)];
        assert!(check_room(&payload("photoz", "cpu", &pt), 512).is_err());
        // GPU ranks run on Batch, with the instance's disk.
        assert!(check_room(&payload("astromae:m.pt", "cuda", &big), 512).is_ok());
        assert_eq!(storage_mb(" 2048 "), Some(2048));
        assert_eq!(storage_mb("${WorkerStorageMB}"), None);
        assert_eq!(storage_mb("20480"), None);
    }
}
