//! Timers on the browser's `setTimeout`: a future that resolves after a delay, and a call after one.
//! (Ours rather than gloo-timers': built on the `JsFuture` the page has anyway, it keeps the page's wasm
//! smaller.)

use wasm_bindgen_futures::JsFuture;

/// Resolves after `ms` milliseconds (never without a window; the page always has one). Dropping the
/// future does not cancel the timeout: its callback still runs, once, and frees what it held then, so
/// a reset heartbeat timer lingers at most its own length.
pub fn sleep(ms: u32) -> JsFuture {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let ms = i32::try_from(ms).unwrap_or(i32::MAX);
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    JsFuture::from(promise)
}

/// Calls `f` after `ms` milliseconds.
pub fn after(ms: u32, f: impl FnOnce() + 'static) {
    wasm_bindgen_futures::spawn_local(async move {
        let _ = sleep(ms).await;
        f();
    });
}
