//! The fixed train / validation split used to train and to report accuracy.
//!
//! An object is in the validation split when its id (a hash of its position)
//! is divisible by 5: about 20% of every catalog, the same objects whatever the
//! file order, and independent of the survey's own held-out rows.

use serde::{Deserialize, Serialize};

/// Which objects of a catalog to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    All,
    Train,
    Validation,
}

/// True for objects in the validation split.
pub fn is_validation(object_id: i64) -> bool {
    object_id.rem_euclid(5) == 0
}

impl Split {
    pub fn contains(self, object_id: i64) -> bool {
        match self {
            Split::All => true,
            Split::Train => !is_validation(object_id),
            Split::Validation => is_validation(object_id),
        }
    }
}
