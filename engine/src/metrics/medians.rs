//! The residuals behind NMAD's two medians, in memory that a run's size cannot grow.
//!
//! A group keeps its first [`EXACT`] residuals as they are, and its medians are
//! exact. Past that (a run of more than 4 million labelled objects), every
//! residual is counted in a bucket of the f32s that share its top 20 bits (sign,
//! exponent and 11 mantissa bits), and the medians are taken over the buckets'
//! midpoints: each residual is then rounded to within 2^-12 of itself, relative
//! (12 significant bits; 2.9e-42 absolute next to 0). So the centre, median(dz),
//! is within about 2^-12·|centre|, and the spread, median(|dz - centre|), within
//! about 2^-12·(2|centre| + spread): absolute errors, which for a biased model
//! (a centre large beside the spread) are a larger share of the spread. Means,
//! sums and fractions stay exact. A group holds at most 16 MiB of residuals, then
//! 8 MiB of counts, however many objects a run has: a Summarize over CAI's
//! 1,000 GB needs no more memory than one over 12.6 GB.

/// Residuals a group keeps exactly (16 MiB of f32).
pub const EXACT: usize = 1 << 22;

/// Low bits of an ordered f32 key that a bucket ignores.
const DROPPED_BITS: u32 = 12;
const BUCKETS: usize = 1 << (32 - DROPPED_BITS);

/// One group's residuals: as they are, then counted by bucket.
#[derive(Debug)]
pub enum Residuals {
    Exact(Vec<f32>),
    Rounded { counts: Box<[u64]>, n: usize },
}

impl Default for Residuals {
    fn default() -> Self {
        Self::Exact(Vec::new())
    }
}

impl Residuals {
    pub fn push(&mut self, dz: f32) {
        match self {
            Self::Exact(values) if values.len() < EXACT => values.push(dz),
            Self::Exact(values) => {
                let mut counts = vec![0u64; BUCKETS].into_boxed_slice();
                for &v in values.iter() {
                    counts[bucket(v)] += 1;
                }
                counts[bucket(dz)] += 1;
                *self = Self::Rounded {
                    counts,
                    n: EXACT + 1,
                };
            }
            Self::Rounded { counts, n } => {
                counts[bucket(dz)] += 1;
                *n += 1;
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Exact(values) => values.len(),
            Self::Rounded { n, .. } => *n,
        }
    }

    /// median(dz) and median(|dz - median(dz)|); `None` with no residuals.
    pub fn medians(self) -> Option<(f64, f64)> {
        match self {
            Self::Exact(mut values) if !values.is_empty() => {
                let centre = median_in_place(&mut values);
                for d in &mut values {
                    *d = (f64::from(*d) - centre).abs() as f32;
                }
                Some((centre, median_in_place(&mut values)))
            }
            Self::Exact(_) => None,
            Self::Rounded { counts, n } => {
                let ascending = counts
                    .iter()
                    .enumerate()
                    .filter(|&(_, &c)| c > 0)
                    .map(|(b, &c)| (midpoint(b), c));
                let centre = median_of_sorted(ascending.clone(), n);
                // Distances from the centre in ascending order: the buckets
                // below it walked down, merged with those above it walked up.
                let (mut below, above): (Vec<_>, Vec<_>) =
                    ascending.partition(|&(v, _)| v < centre);
                below.reverse();
                let distance = |(v, c): (f64, u64)| ((v - centre).abs(), c);
                let merged = Merge {
                    a: below.into_iter().map(distance).peekable(),
                    b: above.into_iter().map(distance).peekable(),
                };
                Some((centre, median_of_sorted(merged, n)))
            }
        }
    }
}

/// Two ascending (value, count) sequences as one.
struct Merge<A: Iterator<Item = (f64, u64)>, B: Iterator<Item = (f64, u64)>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A: Iterator<Item = (f64, u64)>, B: Iterator<Item = (f64, u64)>> Iterator for Merge<A, B> {
    type Item = (f64, u64);
    fn next(&mut self) -> Option<Self::Item> {
        let from_a = match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) => x.0 <= y.0,
            (a, _) => a.is_some(),
        };
        if from_a { self.a.next() } else { self.b.next() }
    }
}

/// The median of `n` values given as ascending (value, count) pairs.
fn median_of_sorted(values: impl Iterator<Item = (f64, u64)>, n: usize) -> f64 {
    let (upper_rank, odd) = (n as u64 / 2, !n.is_multiple_of(2));
    let (mut seen, mut lower) = (0u64, f64::NAN);
    for (v, c) in values {
        // The values at ranks seen..seen + c are all v.
        if !odd && seen < upper_rank && upper_rank - 1 < seen + c {
            lower = v;
        }
        if upper_rank < seen + c {
            return if odd { v } else { (lower + v) / 2.0 };
        }
        seen += c;
    }
    f64::NAN
}

/// The f32's place in ascending order as a u32 (negatives flipped below positives).
fn ordered(v: f32) -> u32 {
    let bits = v.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    }
}

fn from_ordered(key: u32) -> f32 {
    f32::from_bits(if key >> 31 == 1 {
        key & !(1 << 31)
    } else {
        !key
    })
}

fn bucket(dz: f32) -> usize {
    // Infinite residuals (a prediction near f32's limit) count at the largest
    // finite value, so every bucket's midpoint is a number.
    (ordered(dz.clamp(-f32::MAX, f32::MAX)) >> DROPPED_BITS) as usize
}

fn midpoint(bucket: usize) -> f64 {
    f64::from(from_ordered(
        ((bucket as u32) << DROPPED_BITS) | 1 << (DROPPED_BITS - 1),
    ))
}

/// The median of a non-empty slice, reordering it (no copy: the slice may be a
/// group's 4 million residuals).
pub fn median_in_place(values: &mut [f32]) -> f64 {
    let (m, odd) = (values.len() / 2, values.len() % 2 == 1);
    let (lower, upper, _) = values.select_nth_unstable_by(m, f32::total_cmp);
    if odd {
        f64::from(*upper)
    } else {
        let below = lower
            .iter()
            .copied()
            .max_by(f32::total_cmp)
            .unwrap_or(*upper);
        (f64::from(below) + f64::from(*upper)) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_keys_sort_as_the_floats_and_read_back() {
        let values = [
            -f32::MAX,
            -1.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            0.02,
            3.0,
            f32::MAX,
        ];
        for pair in values.windows(2) {
            assert!(ordered(pair[0]) < ordered(pair[1]), "{pair:?}");
        }
        for v in values {
            assert_eq!(from_ordered(ordered(v)).to_bits(), v.to_bits());
        }
        // A residual's bucket midpoint is within 2^-12 of it, relative (or 2^11
        // of the smallest subnormal, 2.9e-42, next to 0).
        for v in values.into_iter().chain([0.0217, -0.00731, 1.0, 7.5e-5]) {
            let m = midpoint(bucket(v));
            let bound = f64::from(v).abs() * 2.0f64.powi(-12);
            assert!((m - f64::from(v)).abs() <= bound.max(2.9e-42), "{v}: {m}");
        }
        assert_eq!(bucket(f32::INFINITY), bucket(f32::MAX));
        assert!(midpoint(bucket(f32::INFINITY)).is_finite());
        assert!(midpoint(bucket(f32::NEG_INFINITY)).is_finite());
    }

    #[test]
    fn medians_of_sorted_counts_take_both_middles() {
        let v = [(1.0, 2), (2.0, 1), (5.0, 1)];
        // 1 1 2 5: middles 1 and 2.
        assert_eq!(median_of_sorted(v.into_iter(), 4), 1.5);
        // 1 1 2: middle 1.
        assert_eq!(median_of_sorted(v[..2].iter().copied(), 3), 1.0);
        assert_eq!(median_of_sorted([(7.0, 1)].into_iter(), 1), 7.0);
    }

    /// A group past [`EXACT`] residuals gives NMAD's medians within the rounding
    /// the module promises: the same residuals, kept exactly, are the reference.
    #[test]
    fn rounded_medians_stay_within_their_bound_of_the_exact_ones() {
        // Residuals like a photo-z run's: a core of scatter ~0.02 around a bias,
        // and a tail of outliers, in a scrambled order; an even count.
        let n = EXACT + 1_000;
        let residual = |i: usize| {
            let u = ((i as u64 * 2_654_435_761) % 1_000_003) as f64 / 1_000_003.0;
            let core = 0.004 + 0.02 * (u - 0.5) * (u - 0.5).abs() * 4.0;
            (if i.is_multiple_of(37) {
                core * 40.0
            } else {
                core
            }) as f32
        };
        let mut rounded = Residuals::default();
        let mut exact = Vec::with_capacity(n);
        for i in 0..n {
            rounded.push(residual(i));
            exact.push(residual(i));
        }
        assert!(matches!(rounded, Residuals::Rounded { n: m, .. } if m == n));
        let (centre, spread) = rounded.medians().unwrap();
        let reference = Residuals::Exact(exact).medians().unwrap();
        // The bounds in the module's doc, with a margin of 1 ulp-sized step for
        // the even count's averaged middles.
        let step = 2.0f64.powi(-12);
        let (c, m) = reference;
        assert!(
            (centre - c).abs() <= step * c.abs() * 1.01,
            "{centre} vs {reference:?}"
        );
        assert!(
            (spread - m).abs() <= step * (2.0 * c.abs() + m) * 1.01,
            "{spread} vs {reference:?}"
        );
        // Not equal by accident: the reference is not on a bucket's midpoint.
        assert_ne!(centre, reference.0);
    }

    #[test]
    fn exact_medians_of_odd_and_even_counts() {
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_in_place(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median_in_place(&mut [5.0]), 5.0);
        assert_eq!(Residuals::default().medians(), None);
    }
}
