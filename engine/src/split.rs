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

/// The fold (0..folds) of an object in repeat `repeat` of a k-fold cross-validation:
/// a SplitMix64 hash of its id and the repeat, so each repeat shuffles the objects
/// anew, the same way whatever the file order (`tools/baselines.py` does the same).
pub fn fold(object_id: i64, repeat: u64, folds: usize) -> usize {
    let mut z = (object_id as u64)
        .wrapping_add(repeat.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % folds.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_folds_match_tools_baselines_py() {
        // Values printed by tools/baselines.py (its object_id and fold); 5000018.5
        // micro-degrees rounds away from zero in both (Python's round() would not).
        let id = crate::partition::object_id(5.0000185, -1.5);
        assert_eq!(id, 8_043_948_083_110_639);
        assert_eq!([0, 1, 2].map(|r| fold(id, r, 5)), [4, 0, 0]);
        assert_eq!(fold(id, 1000, 10), 3);
        assert_eq!(
            crate::partition::object_id(183.5313256941, 0.0896930301),
            1_668_659_220_256_958
        );
    }

    #[test]
    fn folds_are_balanced_and_differ_between_repeats() {
        let mut counts = [0usize; 5];
        let mut moved = 0;
        for id in 0..10_000i64 {
            let f = fold(id * 7919, 0, 5);
            counts[f] += 1;
            moved += usize::from(fold(id * 7919, 1, 5) != f);
        }
        assert!(
            counts.iter().all(|&c| (1_800..2_200).contains(&c)),
            "{counts:?}"
        );
        // Another repeat puts about 4/5 of the objects in another fold.
        assert!((7_500..8_500).contains(&moved), "{moved}");
    }
}
