//! The inference worker: a dedicated Web Worker that answers each [`Job`] with
//! PhotoZ's predictions ([`model::run`]), off the page's thread. Trunk builds
//! it (`data-type="worker"` in `index.html`) beside the app, as
//! `/cosmicai-infer_loader.js`.

use cosmicai_frontend::model;
use cosmicai_frontend::protocol::{Done, Job, READY};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

fn main() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&info.to_string().into());
    }));
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        let Some(text) = event.data().as_string() else {
            return;
        };
        wasm_bindgen_futures::spawn_local(async move {
            let done = match serde_json::from_str::<Job>(&text) {
                Ok(job) => Done {
                    id: job.id,
                    batch: model::run(&job.magnitudes, job.choice).await,
                },
                // Answered all the same when its id reads, so the page stops waiting.
                Err(e) => match serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("id")?.as_u64())
                    .and_then(|id| u32::try_from(id).ok())
                {
                    Some(id) => Done {
                        id,
                        batch: Err(format!("a job the worker cannot read: {e}")),
                    },
                    None => {
                        web_sys::console::error_1(
                            &format!("inference worker: a bad job: {e}").into(),
                        );
                        return;
                    }
                },
            };
            let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
            let reply = serde_json::to_string(&done).unwrap_or_else(|e| {
                serde_json::to_string(&Done {
                    id: done.id,
                    batch: Err(e.to_string()),
                })
                .unwrap_or_default()
            });
            let _ = scope.post_message(&JsValue::from_str(&reply));
        });
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    let _ = scope.post_message(&JsValue::from_str(READY));
}
