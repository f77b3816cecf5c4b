//! Classroom mode (`#/class`): large type for the back of a room. A set of
//! objects with images (a mix of classes, or one) is shown one at a time; the room
//! guesses, then "reveal" gives PhotoZ's prediction (run in this browser) and the
//! spectroscopic redshift, and a scatter fills in as objects are revealed.
//!
//! Everything is fetched when the set is made (objects, images, the model and its
//! predictions), so the lesson goes on if the network does not.

use super::ErrorMessage;
use crate::charts::DensityScatter;
use cosmicai_shared::api::{ObjectPage, ObjectSummary};
use cosmicai_shared::model::Prediction;
use cosmicai_shared::{Class, Provenance};
use leptos::prelude::*;

/// Most objects one set holds.
const MAX_OBJECTS: usize = 50;

/// A lesson's objects and the model's predictions for them, made up front.
#[derive(Clone)]
struct Lesson {
    objects: Vec<ObjectSummary>,
    predictions: Vec<Prediction>,
}

/// Objects with an image and a spectroscopic redshift: of `class`, or the
/// classes taking turns (the server's showcase order). The first set is the
/// showcase's start; a `fresh` one starts anywhere in it.
async fn lesson(count: usize, class: Option<Class>, fresh: bool) -> Result<Lesson, String> {
    let class = class.map_or(String::new(), |c| format!("&class={}", c.name()));
    let count = count.clamp(1, MAX_OBJECTS);
    let query = format!("/api/objects?sort=showcase&has_image=true&z_min=0{class}");
    let offset = if fresh {
        let total = crate::api::get::<ObjectPage>(&format!("{query}&limit=1"))
            .await?
            .total;
        (js_sys::Math::random() * total.saturating_sub(count).saturating_add(1) as f64) as usize
    } else {
        0
    };
    let url = format!("{query}&limit={count}&offset={offset}");
    let objects = crate::api::get::<ObjectPage>(&url).await?.objects;
    if objects.is_empty() {
        return Err("no objects with images and a spectroscopic redshift match".into());
    }
    let magnitudes: Vec<[f32; 5]> = objects.iter().map(|o| o.magnitudes).collect();
    // The CPU path: a lesson is a few dozen objects, and it needs no GPU set-up.
    let batch =
        crate::inference::run(&magnitudes, cosmicai_frontend::protocol::Choice::Cpu).await?;
    Ok(Lesson {
        objects,
        predictions: batch.predictions,
    })
}

fn class_from_key(key: &str) -> Option<Class> {
    Class::ALL.into_iter().find(|c| c.name() == key)
}

fn full_screen() {
    if let Some(root) = document().document_element() {
        let _ = root.request_fullscreen();
    }
}

#[component]
pub fn ClassroomPage() -> impl IntoView {
    let count = RwSignal::new(
        crate::hash_param("n")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(10)
            .clamp(1, MAX_OBJECTS),
    );
    let class = RwSignal::new(crate::hash_param("class").and_then(|c| class_from_key(&c)));
    // Bumped by "new set".
    let made = RwSignal::new(0u32);
    let lesson = LocalResource::new(move || {
        let (n, c) = (count.get_untracked(), class.get_untracked());
        lesson(n, c, made.get() > 0)
    });
    // The count and class go into the link: a reload shows a set of the same kind.
    Effect::new(move |_| {
        let mut query = vec![format!("n={}", count.get())];
        if let Some(c) = class.get() {
            query.push(format!("class={}", c.name()));
        }
        crate::keep_in_link(&crate::route_with("/class", &query));
    });
    let at = RwSignal::new(0usize);
    let revealed = RwSignal::new(0usize);
    // A changed count or class makes a new set at once, as the button does.
    let new_set = move || {
        at.set(0);
        revealed.set(0);
        made.update(|m| *m += 1);
    };
    view! {
        <div class="classroom">
            <div class="classroom-setup">
                <label>"objects "
                    <input type="number" min="1" max=MAX_OBJECTS class="class-count"
                        prop:value=move || count.get().to_string()
                        on:change=move |ev| { count.set(event_target_value(&ev).parse::<usize>().unwrap_or(10).clamp(1, MAX_OBJECTS)); new_set() } />
                    <span class="hint">{format!(" (1 to {MAX_OBJECTS}) ")}</span>
                </label>
                <label>" of "
                    <select class="class-kind" on:change=move |ev| { class.set(class_from_key(&event_target_value(&ev))); new_set() }>
                        <option value="" selected=move || class.get().is_none()>"every class"</option>
                        {[Class::Galaxy, Class::Star, Class::Qso].into_iter().map(|c| view! {
                            <option value=c.name() selected=move || class.get() == Some(c)>{c.name().to_lowercase()}</option>
                        }).collect_view()}
                    </select>
                </label>
                <button class="class-new" on:click=move |_| new_set()>"new set"</button>
                <button class="class-full" on:click=move |_| full_screen()>"full screen"</button>
            </div>
            {move || match lesson.get() {
                None => view! { <p class="loading class-big">"Choosing objects and running the model…"</p> }.into_any(),
                Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
                Some(Ok(l)) => view! { <LessonView lesson=l at=at revealed=revealed /> }.into_any(),
            }}
        </div>
    }
}

#[component]
fn LessonView(lesson: Lesson, at: RwSignal<usize>, revealed: RwSignal<usize>) -> impl IntoView {
    let n = lesson.objects.len();
    let lesson = StoredValue::new(lesson);
    let shown = move || {
        lesson.with_value(|l| {
            (
                l.objects[at.get().min(n - 1)].clone(),
                l.predictions.get(at.get()).cloned(),
            )
        })
    };
    // Revealed objects, (spectroscopic, predicted), for the scatter.
    let points = move || {
        lesson.with_value(|l| {
            l.objects
                .iter()
                .zip(&l.predictions)
                .take(revealed.get())
                .filter_map(|(o, p)| o.redshift.map(|z| (z, p.redshift)))
                .collect::<Vec<_>>()
        })
    };
    let is_revealed = move || revealed.get() > at.get();
    // Named, not inline: a `>` inside a view attribute would end the tag.
    let at_last = move || at.get() + 1 >= n;
    // Once revealed, "reveal" does nothing (marked so, not disabled: a disabled
    // button drops a presenter's keyboard focus on the page) and the focus
    // moves on to "next object" where there is one.
    let next = NodeRef::<leptos::html::Button>::new();
    let reveal = move |_| {
        if is_revealed() {
            return;
        }
        revealed.set(at.get() + 1);
        if let Some(button) = next.get_untracked().filter(|_| !at_last()) {
            let _ = button.focus();
        }
    };
    view! {
        // Every image of the set, loaded now (the lesson goes on offline); one shows.
        <div class="class-stage">
            <div class="class-images">
                {lesson.with_value(|l| l.objects.iter().enumerate().map(|(i, o)| view! {
                    <img class="class-image" width="320" height="320" alt="gri composite of the object"
                        src=format!("/api/objects/{}/image.png", o.id)
                        style:display=move || if at.get() == i { "block" } else { "none" } />
                }).collect_view())}
            </div>
            <div class="class-text">
                <p class="class-counter">{move || format!("Object {} of {n}", at.get() + 1)}</p>
                {move || {
                    let (o, _) = shown();
                    (o.provenance == Provenance::Synthetic).then(|| view! {
                        <p class="class-note"><span class="synthetic" title="rendered by CosmicAI, not observed">"synthetic rendering of a real catalog object"</span></p>
                    })
                }}
                <p class="class-big class-question">{move || if is_revealed() { "Revealed:".to_string() } else { "What redshift do you guess?".to_string() }}</p>
                {move || {
                    let (o, p) = shown();
                    is_revealed().then(|| {
                        let p = p.unwrap_or(Prediction { class: Class::Unknown, class_probability: [f32::NAN; 3], redshift: f32::NAN, redshift_sigma: None, outlier_probability: None });
                        let sigma = p.redshift_sigma.map_or(String::new(), |s| format!(" ± {s:.3}"));
                        view! {
                            <p class="class-big class-prediction" data-z=p.redshift>{format!("PhotoZ: z = {:.3}{sigma} ({})", p.redshift, p.class.name().to_lowercase())}</p>
                            <p class="class-big class-truth">{format!("Spectrum: z = {} ({})", o.redshift.map_or("unknown".into(), |z| format!("{z:.3}")), o.class.name().to_lowercase())}</p>
                            <p class="class-link"><a href=format!("#/object/{}", o.id)>"this object's page"</a></p>
                        }
                    })
                }}
                <div class="class-buttons">
                    <button class="class-reveal" aria-disabled=move || is_revealed().to_string() on:click=reveal>"reveal"</button>
                    <button class="class-next" node_ref=next disabled=at_last
                        on:click=move |_| at.update(|a| *a = (*a + 1).min(n - 1))>"next object"</button>
                </div>
            </div>
        </div>
        <div class="class-scatter" data-points=move || points().len()>
            {move || view! { <DensityScatter points=points() /> }}
        </div>
    }
}
