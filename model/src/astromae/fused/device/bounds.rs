//! The reach of each operation, checked against its buffers' lengths before an
//! implementation touches them: written once, because a GPU kernel's safety
//! rests on it and the host's reference must refuse what the GPU refuses.
//! (Products, copies and biases carry theirs: [`super::Product::ready`],
//! [`super::Copy6::fits`], [`super::Region::fits`].)

use super::Pool;
use crate::astromae::fused::FusedError;

pub(super) fn out_of(what: &str) -> FusedError {
    FusedError(format!("{what} reaches past its buffer"))
}

/// The first `len` values of buffers of `from` and `to` values.
pub(super) fn values(what: &str, from: usize, to: usize, len: usize) -> Result<(), FusedError> {
    if from < len || to < len {
        return Err(out_of(what));
    }
    Ok(())
}

/// `rows` rows of `dim` in `x` and `y`, with `dim` values of `gamma` and `beta`.
pub(super) fn layer_norm(
    x: usize,
    y: usize,
    gamma: usize,
    beta: usize,
    rows: usize,
    dim: usize,
) -> Result<(), FusedError> {
    let len = rows * dim;
    if x < len || y < len || gamma != dim || beta != dim {
        return Err(out_of("a LayerNorm"));
    }
    Ok(())
}

/// The values a convolution's windows read from `x` (`x_offset..` the
/// returned end) and write to `y` (the returned count).
pub(super) fn windows(
    x: usize,
    x_offset: usize,
    y: usize,
    channels: usize,
    planes: usize,
    side: usize,
    k: usize,
) -> Result<(usize, usize), FusedError> {
    let plane = planes * side * side;
    let (end, total) = (x_offset + channels * plane, channels * k * k * plane);
    if end > x || total > y {
        return Err(out_of("a convolution's windows"));
    }
    Ok((end, total))
}

/// The values `pool` reads from `x` and writes to `y`, over `planes` planes of
/// `side x side`.
pub(super) fn pool(
    pool: Pool,
    x: usize,
    y: usize,
    planes: usize,
    side: usize,
) -> Result<(usize, usize), FusedError> {
    let (read, written) = (planes * side * side, planes * pool.out_side(side).pow(2));
    if x < read || y < written {
        return Err(out_of("a pool"));
    }
    Ok((read, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reach_fits_exactly_and_is_refused_one_value_short() {
        assert!(values("a copy", 6, 6, 6).is_ok());
        assert!(values("a copy", 5, 6, 6).is_err() && values("a copy", 6, 5, 6).is_err());
        assert!(layer_norm(12, 12, 4, 4, 3, 4).is_ok());
        assert!(layer_norm(11, 12, 4, 4, 3, 4).is_err());
        assert!(layer_norm(12, 12, 4, 5, 3, 4).is_err());
        // 2 channels of 3 planes of 4x4 from offset 5, 3x3 windows.
        assert_eq!(windows(5 + 96, 5, 864, 2, 3, 4, 3).unwrap(), (101, 864));
        assert!(windows(100, 5, 864, 2, 3, 4, 3).is_err());
        assert!(windows(101, 5, 863, 2, 3, 4, 3).is_err());
        assert_eq!(pool(Pool::Avg2, 48, 12, 3, 4).unwrap(), (48, 12));
        assert_eq!(pool(Pool::Max3, 48, 48, 3, 4).unwrap(), (48, 48));
        assert!(pool(Pool::Avg2, 48, 11, 3, 4).is_err());
        assert!(pool(Pool::Max3, 47, 48, 3, 4).is_err());
        let message = pool(Pool::Max3, 47, 48, 3, 4).unwrap_err().0;
        assert_eq!(message, "a pool reaches past its buffer");
    }
}
