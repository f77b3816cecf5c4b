//! Explore: a paged grid of objects with filters, counts and thumbnails.

use super::ErrorMessage;
use crate::Selection;
use cosmicai_shared::Provenance;
use cosmicai_shared::api::{ObjectPage, ObjectSummary, ServerSettings};
use leptos::prelude::*;

#[component]
pub fn ExplorePage() -> impl IntoView {
    // The filters start from the link (`#/?class=GALAXY&z_max=0.3`) and are
    // written back to it, so a view can be shared.
    let param = |name: &str| crate::hash_param(name).unwrap_or_default();
    let class = RwSignal::new(param("class"));
    let provenance = RwSignal::new(param("provenance"));
    let images = RwSignal::new(param("images") != "false");
    // SkyServer's colour JPEGs for objects without a cutout: off unless asked for.
    let jpegs = RwSignal::new(param("jpegs") == "true");
    let settings = LocalResource::new(|| async {
        crate::api::get::<ServerSettings>("/api/settings")
            .await
            .ok()
    });
    let z_min = RwSignal::new(param("z_min"));
    let z_max = RwSignal::new(param("z_max"));
    let r_max = RwSignal::new(param("r_max"));
    // Cuts made on the plots that the filter bar has no field for (colours, a
    // faint r limit), kept as the link gave them.
    let plot_cuts = RwSignal::new(
        PLOT_CUTS
            .iter()
            .filter_map(|&key| crate::hash_param(key).map(|v| (key, v)))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect::<Vec<_>>(),
    );
    let sort = RwSignal::new(crate::hash_param("sort").unwrap_or_else(|| SHOWCASE.into()));
    // The page of objects is in the link too: back from an object returns to it.
    let offset = RwSignal::new(param("offset").parse::<usize>().unwrap_or(0));
    // Objects per page; `#/?per_page=N` picks it from a link (the benchmark uses 1000).
    let per_page = RwSignal::new(initial_page_size());
    // The filters that are set, as `key=value` pairs: for the API and the link.
    let set_filters = move || {
        [
            ("class", class.get()),
            ("provenance", provenance.get()),
            ("z_min", z_min.get()),
            ("z_max", z_max.get()),
            ("r_max", r_max.get()),
        ]
        .into_iter()
        .chain(plot_cuts.get())
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(key, value)| format!("{key}={}", value.trim()))
        .collect::<Vec<_>>()
    };
    Effect::new(move |_| {
        let mut link = set_filters();
        if !images.get() {
            link.push("images=false".into());
        }
        if jpegs.get() {
            link.push("jpegs=true".into());
        }
        if sort.get() != SHOWCASE {
            link.push(format!("sort={}", sort.get()));
        }
        if per_page.get() != 60 {
            link.push(format!("per_page={}", per_page.get()));
        }
        if offset.get() > 0 {
            link.push(format!("offset={}", offset.get()));
        }
        let route = crate::route_with("/", &link);
        crate::remember_explore(&route);
        crate::keep_in_link(&route);
    });
    let query = move || {
        let mut q = format!(
            "/api/objects?limit={}&offset={}&sort={}",
            per_page.get(),
            offset.get(),
            sort.get()
        );
        for filter in set_filters() {
            q += &format!("&{filter}");
        }
        if images.get() {
            q += "&has_image=true";
        }
        q
    };
    // Each reply with the query it answers: while it is not the current one, a
    // newer page is on its way (the old one stays, greyed, the pager held).
    let page = LocalResource::new(move || {
        let url = query();
        async move { (url.clone(), crate::api::get::<ObjectPage>(&url).await) }
    });
    let answered = Memo::new(move |_| page.get().map(|(url, _)| url));
    let loading = move || answered.get() != Some(query());
    // Where the shown page is (first object, page size, total): the pager lives
    // outside the grid, so a keyboard's focus on Next survives the new page.
    let bounds = Memo::new(move |_| {
        page.get()
            .and_then(|(_, p)| p.ok())
            .map(|p| (p.offset, p.limit, p.total))
    });
    // Out of the view: a `>=` inside its attributes would end the tag.
    let at_end = move || {
        bounds
            .get()
            .is_none_or(|(first, limit, total)| first + limit >= total)
    };
    let reset = move || offset.set(0);
    // The focus after a control that goes with the page: the page itself (the
    // pager's buttons may be disabled at that moment).
    let focus_page = || {
        use wasm_bindgen::JsCast;
        if let Some(main) = document()
            .query_selector("main")
            .ok()
            .flatten()
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let _ = main.focus();
        }
    };
    let selection = use_context::<Selection>().expect("selection context").0;
    view! {
        <section class="filters">
            <label>"Class "
                <select on:change=move |ev| { class.set(event_target_value(&ev)); reset() }>
                    {options(class, &[("", "any"), ("GALAXY", "galaxy"), ("STAR", "star"), ("QSO", "quasar"), ("UNKNOWN", "unlabelled")])}
                </select>
            </label>
            <label>"Data "
                <select on:change=move |ev| { provenance.set(event_target_value(&ev)); reset() }>
                    {options(provenance, &[("", "real and synthetic"), ("real", "real"), ("synthetic", "synthetic")])}
                </select>
            </label>
            <label>"z from " <input type="number" step="0.05" min="0" class="short" prop:value=z_min.get_untracked() on:change=move |ev| { z_min.set(event_target_value(&ev)); reset() } /></label>
            <label>" to " <input type="number" step="0.05" min="0" class="short" prop:value=z_max.get_untracked() on:change=move |ev| { z_max.set(event_target_value(&ev)); reset() } /></label>
            <label>"r brighter than " <input type="number" step="0.5" class="short" prop:value=r_max.get_untracked() on:change=move |ev| { r_max.set(event_target_value(&ev)); reset() } /></label>
            <label>"Sort "
                <select on:change=move |ev| { sort.set(event_target_value(&ev)); reset() }>
                    {options(sort, &[(SHOWCASE, "mixed, labelled first"), ("id", "id"), ("redshift", "redshift"), ("-redshift", "redshift, high first"), ("r", "r magnitude")])}
                </select>
            </label>
            <label>"Per page "
                <select on:change=move |ev| { per_page.set(event_target_value(&ev).parse().unwrap_or(60)); reset() }>
                    {[60usize, 240, 1000].into_iter().map(|n| view! { <option value=n selected=move || per_page.get() == n>{n}</option> }).collect_view()}
                </select>
            </label>
            <label><input type="checkbox" prop:checked=move || images.get() on:change=move |ev| { images.set(event_target_checked(&ev)); reset() } />" with images"</label>
            <label title="Objects without a cutout get a colour JPEG from SDSS SkyServer, loaded by this browser: for looking, not science data">
                // Only objects without a cutout get one: none are shown "with images".
                <input type="checkbox" name="jpegs" disabled=move || images.get() prop:checked=move || jpegs.get() on:change=move |ev| jpegs.set(event_target_checked(&ev)) />" SDSS colour JPEGs"
                {move || images.get().then(|| view! { <span class="hint">" (for objects without images: untick “with images”)"</span> })}</label>
            <a class="to-plots" href=move || format!("#{}", crate::route_with("/plots", &set_filters()))>"Plots of these"</a>
            {move || {
                let cuts = plot_cuts.get();
                (!cuts.is_empty()).then(|| {
                    let text = cuts.iter().map(|(k, v)| cut_label(k, v)).collect::<Vec<_>>().join(", ");
                    view! {
                        <span class="plot-cuts">{format!("cuts from the plots: {text} ")}
                            <button class="clear-plot-cuts" on:click=move |_| { plot_cuts.set(Vec::new()); reset() }>"clear"</button>
                        </span>
                    }
                })
            }}
        </section>
        {move || match page.get().map(|(_, p)| p) {
            None => view! { <p class="loading">"Loading objects…"</p> }.into_any(),
            Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
            Some(Ok(p)) => {
                let shown: Vec<ObjectSummary> = p.objects.clone();
                let jpeg_base = move || {
                    jpegs.get().then(|| settings.get().flatten().map(|s| s.skyserver_jpeg)).flatten()
                };
                let for_predict = shown.clone();
                let to_predict = shown.len().min(64);
                view! {
                    <p class="counts" data-total=p.total>
                        {format!("{} objects: {} galaxies, {} stars, {} quasars, {} unlabelled",
                            p.total, p.counts.galaxy, p.counts.star, p.counts.qso, p.counts.unknown)}
                        <button class="predict-these" disabled=to_predict == 0 on:click=move |_| {
                            selection.set(for_predict.iter().take(64).cloned().collect());
                            crate::navigate("/predict");
                        }>{if shown.len() > to_predict {
                            format!("Predict the first {to_predict} of these in the browser")
                        } else {
                            format!("Predict these {to_predict} in the browser")
                        }}</button>
                    </p>
                    {(p.total == 0).then(|| view! {
                        <p class="empty" role="status">"No objects match these filters: widen or remove them to see more."</p>
                    })}
                    {(p.total > 0 && p.objects.is_empty()).then(|| view! {
                        <p class="empty past-the-end" role="status">{format!("This page starts past the last of {}. ", cosmicai_shared::counted(p.total, "object"))}
                            // The button goes with the page: the focus goes to the page.
                            <button class="first-page" on:click=move |_| {
                                reset();
                                focus_page();
                            }>"Back to the first page"</button>
                        </p>
                    })}
                        // One HTML string for the whole page of cards: the browser parses
                        // 1,000 cards in a few ms, where creating them node by node from
                        // wasm took about 300 ms. Cards are plain links with no handlers.
                        <div class="grid" class:stale=loading inner_html=move || cards_html(&shown, jpeg_base().as_deref())></div>
                }
                .into_any()
            }
        }}
        <p class="pager" hidden=move || bounds.get().is_none() aria-busy=move || loading().to_string()>
            // Clicks while a page loads are ignored, not the buttons disabled: a
            // disabled button drops the keyboard's focus.
            <button disabled=move || offset.get() == 0 aria-disabled=move || loading().to_string()
                on:click=move |_| if let (false, Some((first, limit, total))) = (loading(), bounds.get_untracked()) {
                    // From past the end, the last page; else the one before.
                    offset.set(if first >= total && total > 0 { (total - 1) / limit.max(1) * limit } else { first.saturating_sub(limit) })
                }>"Previous"</button>
            {move || bounds.get().map(|(first, limit, total)| match total {
                0 => " none ".to_string(),
                _ if first >= total => format!(" past the end of {total} "),
                _ => format!(" {}–{} of {} ", first + 1, (first + limit).min(total), total),
            })}
            <button class="next" disabled=at_end aria-disabled=move || loading().to_string()
                on:click=move |_| if let (false, Some((first, limit, _))) = (loading(), bounds.get_untracked()) { offset.set(first + limit) }>"Next"</button>
            {move || loading().then(|| view! { <span class="loading" role="status">" loading…"</span> })}
        </p>
    }
}

/// Filters the plots make that have no field in the filter bar (API names).
const PLOT_CUTS: [&str; 7] = [
    "ug_min", "ug_max", "gr_min", "gr_max", "ri_min", "ri_max", "r_min",
];

/// A cut in words: `gr_min`, `0.3` reads "g − r ≥ 0.3".
fn cut_label(key: &str, value: &str) -> String {
    let (name, bound) = key.rsplit_once('_').unwrap_or((key, ""));
    let name = crate::cuts::Axis::ALL
        .into_iter()
        .find(|a| a.key() == name)
        .map_or(name, |a| a.label());
    let sign = if bound == "min" { "≥" } else { "≤" };
    format!("{name} {sign} {value}")
}

/// The API's order for a first page: labelled objects with images, the
/// classes taking turns, unlabelled detections last.
const SHOWCASE: &str = "showcase";

/// `<option>`s of a select bound to `value`, the current one selected.
fn options(value: RwSignal<String>, choices: &[(&'static str, &'static str)]) -> impl IntoView {
    choices
        .iter()
        .map(|&(key, label)| {
            view! { <option value=key selected=move || value.get() == key>{label}</option> }
        })
        .collect_view()
}

fn initial_page_size() -> usize {
    crate::hash_param("per_page")
        .and_then(|n| n.parse().ok())
        .filter(|n| (1..=1000).contains(n))
        .unwrap_or(60)
}

/// A SkyServer JPEG of the sky around `ra`, `dec`: 96 pixels of 0.3", about the
/// field of a 64-pixel SDSS cutout.
fn jpeg_url(base: &str, ra: f64, dec: f64) -> String {
    format!("{base}?ra={ra:.6}&dec={dec:.6}&scale=0.3&width=96&height=96")
}

/// The cards of `objects` as HTML, every value from the data escaped. A card
/// links to its object and shows its gri composite, the SDSS colour JPEG (when
/// `jpeg_base` is set and it has no cutout) or its r magnitude.
fn cards_html(objects: &[ObjectSummary], jpeg_base: Option<&str>) -> String {
    use std::fmt::Write;
    let mut html = String::with_capacity(objects.len() * 360);
    for object in objects {
        let class = escape(object.class.name());
        let z = object
            .redshift
            .map_or("z unknown".to_string(), |z| format!("z = {z:.3}"));
        let _ = write!(
            html,
            r##"<a class="card" href="#/object/{id}" data-class="{class}">"##,
            id = object.id
        );
        match (object.has_image, jpeg_base.zip(object.ra.zip(object.dec))) {
            (true, _) => {
                let _ = write!(
                    html,
                    r#"<img loading="lazy" width="96" height="96" alt="gri composite" src="/api/objects/{}/image.png">"#,
                    object.id
                );
            }
            (false, Some((base, (ra, dec)))) => {
                let _ = write!(
                    html,
                    r#"<img class="jpeg" loading="lazy" width="96" height="96" alt="SDSS colour JPEG" src="{}"><span class="jpeg-label">SDSS colour JPEG, not science data</span>"#,
                    escape(&jpeg_url(base, ra, dec))
                );
            }
            (false, None) => {
                let _ = write!(
                    html,
                    r#"<div class="no-image">no image<br>r = {:.2}</div>"#,
                    object.magnitudes[2]
                );
            }
        }
        let _ = write!(html, r#"<span class="label">{class} · {z}</span>"#);
        if object.provenance == Provenance::Synthetic {
            // Read as "GALAXY · z = 0.559, synthetic", not "…0.559synthetic".
            html.push_str(r#"<span class="sr-only">, </span><span class="synthetic" title="rendered by CosmicAI, not observed">synthetic</span>"#);
        }
        html.push_str("</a>");
    }
    html
}

/// Text safe inside HTML and its quoted attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
