//! Browser notifications for mentions. The page asks once, from a button the user presses (browsers
//! ignore a request that no gesture started); afterwards a live message that names the user (`@name`,
//! [`crate::text::mentions`]) raises a notification while the page is in the background. A browser
//! without the Notification API gets neither the button nor notifications.

use web_sys::{Notification, NotificationPermission};

/// A message older than this (a replay after a reconnect) raises no notification.
const FRESH_MS: i64 = 60_000;

/// Whether the browser has the API.
fn supported() -> bool {
    web_sys::window()
        .is_some_and(|w| js_sys::Reflect::has(&w, &"Notification".into()).unwrap_or(false))
}

/// Whether the user has not decided yet (the page may ask).
pub fn undecided() -> bool {
    supported() && Notification::permission() == NotificationPermission::Default
}

/// Asks the user (from a click on the offer, which only shows when [`undecided`]).
pub fn ask() {
    let _ = Notification::request_permission();
}

/// Raises "`sender` in #`room`: `text`", if the page is hidden, allowed to, and the message is live
/// (sent within the last minute by the browser's clock).
pub fn mention(sender: &str, room: &str, text: &str, sent_ms: i64) {
    let hidden = web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.hidden());
    if !hidden
        || !supported()
        || Notification::permission() != NotificationPermission::Granted
        || js_sys::Date::now() as i64 - sent_ms > FRESH_MS
    {
        return;
    }
    // The text in the title rather than a body: the options object would cost the page's weight.
    let _ = Notification::new(&format!("{sender} in #{room}: {text}"));
}
