//! The `/api/cutouts` body, encoded by the server and decoded by the browser,
//! side by side so they cannot drift. Little-endian: `u32` count, `u32` side,
//! then per object its `i64` id and `5 x side x side` `f32` pixels (bands u, g,
//! r, i, z, each row by row).

/// One object's cutout.
#[derive(Debug, Clone, PartialEq)]
pub struct Cutout {
    pub id: i64,
    pub side: usize,
    /// `[5, side, side]`.
    pub pixels: Vec<f32>,
}

const HEADER_BYTES: usize = 8;

/// Bytes of one object in the body (its id and pixels).
fn object_bytes(side: usize) -> Option<usize> {
    side.checked_mul(side)?.checked_mul(5 * 4)?.checked_add(8)
}

/// A body for `count` cutouts of `side` x `side`, to [`push`] them into.
pub fn begin(count: usize, side: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        object_bytes(side)
            .and_then(|b| b.checked_mul(count))
            .map_or(0, |b| b + HEADER_BYTES),
    );
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.extend_from_slice(&(side as u32).to_le_bytes());
    out
}

/// Appends one object: its id, then its `5 x side x side` pixels in order.
pub fn push(out: &mut Vec<u8>, id: i64, pixels: impl IntoIterator<Item = f32>) {
    out.extend_from_slice(&id.to_le_bytes());
    for p in pixels {
        out.extend_from_slice(&p.to_le_bytes());
    }
}

/// Reads a body; its length must be exactly what its header says (nothing is
/// allocated from the header before that is checked).
pub fn decode(body: &[u8]) -> Result<Vec<Cutout>, String> {
    let word = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let (Some(count), Some(side)) = (word(0), word(4)) else {
        return Err(format!(
            "cutouts: {} bytes, shorter than the header",
            body.len()
        ));
    };
    let per_object = object_bytes(side).ok_or("cutouts: side overflows")?;
    let expected = per_object
        .checked_mul(count)
        .and_then(|b| b.checked_add(HEADER_BYTES))
        .ok_or("cutouts: count overflows")?;
    if body.len() != expected {
        return Err(format!(
            "cutouts: {} bytes, but {count} cutouts of {side} x {side} take {expected}",
            body.len()
        ));
    }
    Ok(body[HEADER_BYTES..]
        .chunks_exact(per_object)
        .map(|object| Cutout {
            id: i64::from_le_bytes(object[..8].try_into().unwrap_or_default()),
            side,
            pixels: object[8..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_pushed_decodes_to_the_same_cutouts() {
        let cutouts: Vec<Cutout> = (0..3)
            .map(|k| Cutout {
                id: 1 << 40 | k,
                side: 4,
                pixels: (0..80).map(|i| i as f32 * 0.5 - k as f32).collect(),
            })
            .collect();
        let mut body = begin(cutouts.len(), 4);
        for c in &cutouts {
            push(&mut body, c.id, c.pixels.iter().copied());
        }
        assert_eq!(body.len(), 8 + 3 * (8 + 80 * 4));
        assert_eq!(decode(&body).unwrap(), cutouts);
    }

    #[test]
    fn a_body_that_disagrees_with_its_header_is_refused() {
        let mut body = begin(2, 4);
        push(&mut body, 7, vec![0.0; 80]);
        let e = decode(&body).unwrap_err();
        assert!(e.contains("2 cutouts of 4 x 4 take 664"), "{e}");
        assert!(decode(&[1, 0]).is_err());
        // A header claiming a huge count or side is an error, not an allocation.
        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
    }
}
