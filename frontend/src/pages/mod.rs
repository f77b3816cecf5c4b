//! One module per view.

pub mod classroom;
pub mod explore;
pub mod object;
pub mod plots;
pub mod predict;
pub mod run;
pub mod runs;
pub mod sky;
pub mod sweeps;

use leptos::prelude::*;

/// An API error, shown instead of the view (never a blank page).
#[component]
pub fn ErrorMessage(message: String) -> impl IntoView {
    view! { <p class="error" role="alert">{message}</p> }
}
