//! Byte sizes as people write them: `25MB`, `100 MiB`, `4096`.

/// Parses a size; decimal units (kB, MB, GB) are powers of 1000, binary units
/// (KiB, MiB, GiB) powers of 1024, a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("size '{text}' does not start with a number (try 25MB)"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "size '{text}' has unknown unit '{other}' (use B, kB, MB, GB, KiB, MiB or GiB)"
            ));
        }
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(format!("size '{text}' must be at least one byte"));
    }
    Ok(bytes as u64)
}

pub use cosmicai_shared::size::format_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_binary_units() {
        assert_eq!(parse_size("25MB"), Ok(25_000_000));
        assert_eq!(parse_size("100 mb"), Ok(100_000_000));
        assert_eq!(parse_size("1MiB"), Ok(1_048_576));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1.5kB"), Ok(1500));
    }

    #[test]
    fn rejects_nonsense_with_the_input_in_the_message() {
        assert!(parse_size("MB").unwrap_err().contains("'MB'"));
        assert!(parse_size("25XB").unwrap_err().contains("xb"));
        assert!(parse_size("0MB").is_err());
    }
}
