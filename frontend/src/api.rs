//! Talking to `cosmicai serve`: JSON over fetch; errors come back as the API's message.
//! POSTs (which start, stop or cost work) carry the server's token when the user
//! gave one: servers off loopback, or started with `--token`, require it.

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestInit, Response};

/// Where the token is kept between visits (this browser's storage for the site).
const TOKEN_KEY: &str = "cosmicai.token";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// The token the user gave, if any.
pub fn token() -> Option<String> {
    storage()?
        .get_item(TOKEN_KEY)
        .ok()?
        .filter(|t| !t.trim().is_empty())
}

/// Keeps `token` for later requests; an empty one forgets it.
pub fn set_token(token: &str) {
    if let Some(storage) = storage() {
        let _ = match token.trim() {
            "" => storage.remove_item(TOKEN_KEY),
            t => storage.set_item(TOKEN_KEY, t),
        };
    }
}

/// Times a GET is sent in all while the server answers 429 (its reply slots
/// full: a class opening one finished run at once).
const BUSY_TRIES: u32 = 5;

/// What a request that met no server says (its page may try again, and tell
/// this apart from an answer).
pub const UNREACHABLE: &str = "the server cannot be reached (is cosmicai serve still running?)";

async fn fetch(url: &str, method: &str, body: Option<String>) -> Result<Response, String> {
    if method != "GET" {
        return send(url, method, body, None).await.map_err(|f| f.message);
    }
    // A GET changes nothing: asked again after the wait the server names
    // (Retry-After, 1 to 30 s; this server's is 30), spread a little so a
    // class does not come back at once. POSTs are left to their user.
    let mut tries = 1;
    loop {
        match send(url, method, None, None).await {
            Err(Failure {
                busy_s: Some(wait_s),
                ..
            }) if tries < BUSY_TRIES => {
                tries += 1;
                let jitter = js_sys::Math::random() * 1000.0;
                sleep_ms((f64::from(wait_s.clamp(1, 30)) * 1000.0 + jitter) as i32).await;
            }
            answer => return answer.map_err(|f| f.message),
        }
    }
}

/// A request that did not succeed: what to show, and for a 429 the seconds the
/// server asked to wait (Retry-After; 1 where it named none).
struct Failure {
    message: String,
    busy_s: Option<u32>,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            message,
            busy_s: None,
        }
    }
}

async fn send(
    url: &str,
    method: &str,
    body: Option<String>,
    idempotency_key: Option<&str>,
) -> Result<Response, Failure> {
    let init = RequestInit::new();
    init.set_method(method);
    if let Some(body) = body {
        init.set_body(&wasm_bindgen::JsValue::from_str(&body));
    }
    let request = Request::new_with_str_and_init(url, &init).map_err(|e| format!("{e:?}"))?;
    if method == "POST" {
        let headers = request.headers();
        headers
            .set("Content-Type", "application/json")
            .map_err(|e| format!("{e:?}"))?;
        if let Some(token) = token() {
            headers
                .set("Authorization", &format!("Bearer {}", token.trim()))
                .map_err(|e| format!("{e:?}"))?;
        }
        if let Some(key) = idempotency_key {
            headers
                .set("Idempotency-Key", key)
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    let window = web_sys::window().ok_or_else(|| "no window".to_string())?;
    let response: Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(|_| UNREACHABLE.to_string())?
        .unchecked_into();
    if response.ok() {
        return Ok(response);
    }
    let status = response.status();
    let busy_s = (status == 429).then(|| {
        response
            .headers()
            .get("Retry-After")
            .ok()
            .flatten()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1)
    });
    let text = match response.text() {
        Ok(p) => JsFuture::from(p)
            .await
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    let message = serde_json::from_str::<cosmicai_shared::api::ApiError>(&text)
        .map(|e| e.error)
        .unwrap_or(text);
    if status == 401 {
        return Err(
            format!("{status}: {message} — give it under Runs, in the Server token field").into(),
        );
    }
    Err(Failure {
        message: format!("{status}: {message}"),
        busy_s,
    })
}

async fn json<T: DeserializeOwned>(response: Response) -> Result<T, String> {
    let text = JsFuture::from(response.text().map_err(|e| format!("{e:?}"))?)
        .await
        .map_err(|e| format!("{e:?}"))?
        .as_string()
        .unwrap_or_default();
    // Our own server's reply that does not read is most likely from another
    // build than this explorer's (a `dist/` older than the server).
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "unexpected reply: {e} (is this explorer from another build than the server? \
             reload the page, or build both again with make serve)"
        )
    })
}

pub async fn get<T: DeserializeOwned>(url: &str) -> Result<T, String> {
    json(fetch(url, "GET", None).await?).await
}

pub async fn post<B: Serialize, T: DeserializeOwned>(url: &str, body: &B) -> Result<T, String> {
    let body = serde_json::to_string(body).map_err(|e| e.to_string())?;
    json(fetch(url, "POST", Some(body)).await?).await
}

thread_local! {
    /// The last launch that did not come back: its URL and body, and its key.
    static UNANSWERED: std::cell::RefCell<Option<(String, String)>> =
        const { std::cell::RefCell::new(None) };
}

/// A POST that starts work (a run, a sweep), with an `Idempotency-Key`: the same
/// launch sent again after a failure (a timeout, the network) carries the same
/// key, so the server answers with what it started instead of starting it twice.
pub async fn launch<B: Serialize, T: DeserializeOwned>(url: &str, body: &B) -> Result<T, String> {
    let body = serde_json::to_string(body).map_err(|e| e.to_string())?;
    let what = format!("{url} {body}");
    let key = UNANSWERED.with_borrow_mut(|held| match held {
        Some((launch, key)) if *launch == what => key.clone(),
        _ => {
            let key = format!(
                "{:013x}-{:016x}",
                js_sys::Date::now() as u64,
                (js_sys::Math::random() * 2f64.powi(64)) as u64
            );
            *held = Some((what, key.clone()));
            key
        }
    });
    let answer = match send(url, "POST", Some(body), Some(&key)).await {
        Ok(response) => json(response).await,
        Err(f) => Err(f.message),
    };
    // Started: the next launch is a new one. A failure keeps the key for the
    // same launch sent again (a changed form is another launch, with a new key).
    if answer.is_ok() {
        UNANSWERED.with_borrow_mut(|held| *held = None);
    }
    answer
}

pub async fn bytes(url: &str) -> Result<Vec<u8>, String> {
    let response = fetch(url, "GET", None).await?;
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| format!("{e:?}"))?)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Waits `ms` milliseconds (for polling).
pub async fn sleep_ms(ms: i32) {
    let _ = JsFuture::from(js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    }))
    .await;
}

/// Milliseconds since page load, for timing.
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now())
}
