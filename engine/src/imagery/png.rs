//! PNG encoding of the display views (`cosmicai_shared::display`), for the server.

/// Encodes 8-bit pixels (`channels` = 1 gray, 3 RGB, 4 RGBA) as a PNG.
pub fn encode(width: u32, height: u32, channels: u8, pixels: &[u8]) -> Result<Vec<u8>, String> {
    let color = match channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        other => return Err(format!("{other} channels: PNG takes 1, 3 or 4")),
    };
    if pixels.len() != (width * height) as usize * channels as usize {
        return Err(format!(
            "{} bytes for a {width}x{height} image of {channels} channels",
            pixels.len()
        ));
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(pixels).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_through_a_decoder() {
        let pixels: Vec<u8> = (0..4 * 3 * 3).map(|i| i as u8).collect();
        let bytes = super::encode(4, 3, 3, &pixels).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (4, 3));
        assert_eq!(&buf[..info.buffer_size()], &pixels[..]);
        assert!(super::encode(4, 3, 2, &pixels).is_err());
        assert!(super::encode(5, 3, 3, &pixels).is_err());
    }
}
