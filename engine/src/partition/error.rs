use std::path::PathBuf;

/// Why a partition file cannot be read or written, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("partition {}: {field}: {problem}", path.display())]
pub struct PartitionError {
    pub path: PathBuf,
    /// The tensor or metadata key at fault, or `file` / `header` for the container.
    pub field: String,
    pub problem: String,
}

impl PartitionError {
    pub fn new(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        PartitionError {
            path: path.into(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}
