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

/// An API error, shown instead of the view (never a blank page); where the
/// server could not be reached, with a way to ask again once it is back.
#[component]
pub fn ErrorMessage(message: String) -> impl IntoView {
    let unreachable = message == crate::api::UNREACHABLE;
    let remake = use_context::<crate::Remake>();
    view! {
        <p class="error" role="alert">
            {message}
            {(unreachable && remake.is_some()).then(|| view! {
                " "
                <button class="retry" on:click=move |_| {
                    if let Some(remake) = remake {
                        remake.page();
                    }
                }>"Try again"</button>
            })}
        </p>
    }
}
