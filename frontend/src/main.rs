//! The CosmicAI explorer: browse SDSS objects and their images, predict redshifts
//! in the browser, launch and watch pipeline runs, read their results.
//!
//! A client-side leptos app (built by Trunk) over `cosmicai serve`'s `/api`; the
//! types come from `cosmicai-shared`. Pages live in `pages/`, one per view; the
//! route is the URL hash (`#/object/ID`), so any view can be linked and reloaded.

mod api;
mod canvas;
mod charts;
mod classes;
mod cuts;
mod inference;
mod pages;
mod plot;

use cosmicai_shared::api::ObjectSummary;
use leptos::prelude::*;

/// Makes the current page again from its link (its requests sent anew): what
/// "Try again" does once the server is back.
#[derive(Clone, Copy)]
pub struct Remake(RwSignal<u64>);

impl Remake {
    pub fn page(self) {
        self.0.update(|n| *n += 1);
    }
}

/// Objects picked on Explore for in-browser prediction.
#[derive(Clone, Copy)]
pub struct Selection(pub RwSignal<Vec<ObjectSummary>>);

pub fn current_route() -> String {
    web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default()
        .trim_start_matches('#')
        .to_string()
}

/// The value of `name` in the route's query (`#/page?name=value&…`), for links that set a view up.
pub fn hash_param(name: &str) -> Option<String> {
    let route = current_route();
    let (_, query) = route.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_string)
}

/// `path?a=1&b=2`, or `path` alone without pairs.
pub fn route_with(path: &str, query: &[String]) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

thread_local! {
    /// The Explore page's last route, filters and all: where "← Explore" goes back to.
    static LAST_EXPLORE: std::cell::RefCell<String> = std::cell::RefCell::new("/".into());
}

/// Remembers the Explore page's route as it changes.
pub fn remember_explore(route: &str) {
    LAST_EXPLORE.with(|last| *last.borrow_mut() = route.to_string());
}

/// The Explore page as it was last left (`/` before it was ever shown).
pub fn last_explore() -> String {
    LAST_EXPLORE.with(|last| last.borrow().clone())
}

/// Writes a page's state into the link (so it can be shared and reloaded),
/// unless it is there. The entry is replaced, not added: Back leaves the page
/// (with its state) rather than stepping through each filter typed, and no
/// `hashchange` fires, so the page is not made again.
pub fn keep_in_link(route: &str) {
    if current_route() == route {
        return;
    }
    let replaced = web_sys::window().and_then(|w| w.history().ok()).map(|h| {
        h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&format!("#{route}")))
    });
    if !matches!(replaced, Some(Ok(()))) {
        navigate(route);
    }
}

pub fn navigate(to: &str) {
    if let Some(w) = web_sys::window() {
        let _ = w.location().set_hash(to);
    }
}

#[component]
fn App() -> impl IntoView {
    // Each `hashchange` is a navigation (a link, Back, a typed address): the
    // page is made again from the link, query and all, so what it shows is what
    // the link says. Pages write their own state with `keep_in_link`, which
    // fires none.
    let visits = RwSignal::new(0u64);
    let main = NodeRef::<leptos::html::Main>::new();
    let handle = window_event_listener(leptos::ev::hashchange, move |_| {
        visits.update(|n| *n += 1);
        // Keyboard and screen-reader users start at the new page, not at the
        // link they left (which may be gone); the first load keeps the browser's.
        if let Some(main) = main.get_untracked() {
            let _ = main.focus();
        }
    });
    on_cleanup(move || handle.remove());
    provide_context(Selection(RwSignal::new(Vec::new())));
    provide_context(Remake(visits));
    // An explorer built from other sources than its server (a `dist/` left
    // from an older build) may fail to read its replies: say why, once.
    let other_build = RwSignal::new(None::<String>);
    leptos::task::spawn_local(async move {
        if let Ok(health) = api::get::<cosmicai_shared::api::Health>("/api/health").await
            && health.api != cosmicai_shared::API_FINGERPRINT
        {
            other_build.set(Some(health.version));
        }
    });
    let page = move || {
        visits.track();
        let route = current_route();
        let path = route
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_matches('/')
            .to_string();
        let parts: Vec<&str> = path.split('/').collect();
        // The tab (and a screen reader, on arrival) names the page.
        let title = match parts.as_slice() {
            ["object", id] => format!("Object {id}"),
            ["predict"] => "Predict in the browser".into(),
            ["sky"] => "Sky".into(),
            ["plots"] => "Plots".into(),
            ["class"] => "Classroom".into(),
            ["runs"] => "Runs".into(),
            ["sweeps", id] => format!("Sweep {id}"),
            ["runs", id] => format!("Run {id}"),
            _ => "Explore".into(),
        };
        if let Some(document) = web_sys::window().and_then(|w| w.document()) {
            document.set_title(&format!("{title} · CosmicAI"));
        }
        match parts.as_slice() {
            ["object", id] => match id.parse::<i64>() {
                Ok(id) => {
                    pages::object::ObjectPage(pages::object::ObjectPageProps { id }).into_any()
                }
                Err(_) => {
                    view! { <p class="error">"Not an object id: " {id.to_string()}</p> }.into_any()
                }
            },
            ["predict"] => pages::predict::PredictPage().into_any(),
            ["sky"] => pages::sky::SkyPage().into_any(),
            ["plots"] => pages::plots::PlotsPage().into_any(),
            ["class"] => pages::classroom::ClassroomPage().into_any(),
            ["runs"] => pages::runs::RunsPage().into_any(),
            ["sweeps", id] => {
                pages::sweeps::SweepPage(pages::sweeps::SweepPageProps { id: id.to_string() })
                    .into_any()
            }
            ["runs", id] => {
                pages::run::RunPage(pages::run::RunPageProps { id: id.to_string() }).into_any()
            }
            _ => pages::explore::ExplorePage().into_any(),
        }
    };
    // For keyboards: past the header's links to the page itself (an in-page
    // anchor would change the route, which lives in the hash).
    let skip = move |ev: leptos::ev::MouseEvent| {
        ev.prevent_default();
        if let Some(main) = main.get_untracked() {
            let _ = main.focus();
        }
    };
    view! {
        <header>
            // First in the header (a landmark, as every part of the page is).
            <a class="skip-link" href="#/" on:click=skip>"Skip to the page"</a>
            <h1 class="brand-title"><a href="#/" class="brand">"CosmicAI"</a></h1>
            <nav>
                <a href="#/">"Explore"</a>
                <a href="#/sky">"Sky"</a>
                <a href="#/plots">"Plots"</a>
                <a href="#/predict">"Predict in the browser"</a>
                <a href="#/runs">"Runs"</a>
                <a href="#/class">"Classroom"</a>
            </nav>
        </header>
        {move || other_build.get().map(|version| view! {
            <p class="error build-mismatch" role="alert">
                "This explorer was built from other sources than the server it talks to (cosmicai "
                {version}
                "), so some pages may not read its replies. Build both again: "
                <code>"make serve"</code>
                " (or "<code>"trunk build --release"</code>" and restart the server)."
            </p>
        })}
        <main node_ref=main tabindex="-1">{page}</main>
    }
}

fn main() {
    console_error_panic_hook();
    leptos::mount::mount_to_body(App);
}

/// Panics show up in the console with their message rather than "unreachable".
fn console_error_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&info.to_string().into());
    }));
}
