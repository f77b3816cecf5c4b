//! The explorer's in-browser inference, apart from the explorer itself: the
//! inference worker (`src/bin/cosmicai-infer.rs`) runs [`model`], and the app
//! (`src/main.rs`) talks to it in [`protocol`]'s messages. burn and its two
//! backends are linked into the worker's module only, which a page fetches
//! when it first predicts, so the app's own module stays small and Explore
//! paints sooner.

pub mod model;
pub mod protocol;
