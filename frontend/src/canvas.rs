//! Pixels computed in Rust, put on a 2D canvas in one call.

use wasm_bindgen::{Clamped, JsCast};

/// Puts `rgba` (`width` x `height`, 4 bytes a pixel) at the canvas's top left.
pub fn put_rgba(
    canvas: &web_sys::HtmlCanvasElement,
    rgba: &[u8],
    width: u32,
    height: u32,
) -> Result<(), String> {
    let ctx: web_sys::CanvasRenderingContext2d = canvas
        .get_context("2d")
        .map_err(|e| format!("{e:?}"))?
        .ok_or("no 2d context")?
        .unchecked_into();
    let image = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(rgba), width, height)
        .map_err(|e| format!("{e:?}"))?;
    ctx.put_image_data(&image, 0.0, 0.0)
        .map_err(|e| format!("{e:?}"))
}
