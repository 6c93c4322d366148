//! Accounts in the real app: the sign-in screen when the server requires accounts, registering (with the
//! password rules), the session surviving a reload, messages relayed between accounts under their names,
//! signing out and in again, a guest signing in, and an expired token returning the page to the sign-in
//! screen without reconnecting forever (connection attempts are counted in the page, see
//! `sockets_opened_during`).

use e2e::{AppServer, Browser, Page, count, state_of, testid};
use fantoccini::Locator;
use std::time::Duration;

const GOOD_PASSWORD: &str = "correct horse battery";

/// Waits for the sign-in screen.
async fn wait_sign_in(page: &Page) {
    page.wait_present("login-name", true).await;
    assert!(!page.present("message-input").await, "no chat behind it");
}

/// Fills the sign-in form and presses `button` (`login-submit` or `register-submit`).
async fn submit(page: &Page, button: &str, name: &str, password: &str) {
    page.fill("login-name", name).await;
    page.fill("login-password", password).await;
    page.click(&testid(button)).await;
}

/// Waits until the chat shows `name` as the current user and is connected.
async fn wait_chat_as(page: &Page, name: &str) {
    page.wait_text("current-user", name, |t| t == name).await;
    page.wait_connected().await;
    assert!(!page.present("login-name").await, "no sign-in form");
}

/// A server whose tokens last 3 s, and a page on it signed in as a newly registered `ann`.
async fn signed_in_with_a_short_token() -> (AppServer, Browser, Page) {
    let server = AppServer::start_with(|c| {
        c.allow_anonymous = false;
        c.token_ttl = Duration::from_secs(3);
    })
    .await;
    let browser = Browser::start().await;
    let page = browser.page(&server.url()).await;
    wait_sign_in(&page).await;
    submit(&page, "register-submit", "ann", GOOD_PASSWORD).await;
    wait_chat_as(&page, "ann").await;
    (server, browser, page)
}

/// How many WebSockets the page creates during `span` (counted by wrapping the page's `WebSocket`
/// constructor, which the app's wasm-bindgen glue looks up at each call; until the page reloads).
async fn sockets_opened_during(page: &Page, span: Duration) -> u64 {
    page.client
        .execute(
            "if (window.socketsOpened === undefined) {
                 const Real = window.WebSocket;
                 window.WebSocket = function (...args) {
                     window.socketsOpened += 1;
                     return new Real(...args);
                 };
             }
             window.socketsOpened = 0;",
            vec![],
        )
        .await
        .expect("wrap WebSocket");
    tokio::time::sleep(span).await;
    page.client
        .execute("return window.socketsOpened;", vec![])
        .await
        .expect("read the count")
        .as_u64()
        .expect("a count")
}

/// Each shown message as (sender, text).
async fn by_sender(page: &Page) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(list) = page.client.find_all(Locator::Css(&testid("message"))).await else {
        return out;
    };
    for m in list {
        let part = |class: &'static str| {
            let m = m.clone();
            async move {
                match m.find(Locator::Css(class)).await {
                    Ok(e) => e.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                }
            }
        };
        out.push((part(".sender").await, part(".text").await));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_register_sign_in_chat_and_sign_out() {
    let server = AppServer::start_with(|c| c.allow_anonymous = false).await;
    let browser = Browser::start().await;
    let a = browser.page(&server.url()).await;
    wait_sign_in(&a).await;

    // A weak password is refused with a message, and nothing else happens.
    submit(&a, "register-submit", "ann", "short").await;
    let error = a
        .wait_text("login-error", "an error", |t| !t.is_empty())
        .await;
    assert!(error.to_lowercase().contains("password"), "{error}");
    assert!(a.present("login-name").await);

    submit(&a, "register-submit", "ann", GOOD_PASSWORD).await;
    wait_chat_as(&a, "ann").await;
    a.send("hello from ann").await;
    a.wait_messages("to show ann's message as sent", |m| {
        state_of(m, "hello from ann") == Some("sent")
    })
    .await;

    // The session (an HttpOnly cookie) survives a reload, and so does ann's history.
    a.client.refresh().await.expect("reload");
    wait_chat_as(&a, "ann").await;
    a.wait_messages("to keep the history", |m| count(m, "hello from ann") == 1)
        .await;

    // Another browser, another account: ann's message arrives under her name.
    let b = browser.page(&server.url()).await;
    wait_sign_in(&b).await;
    submit(&b, "register-submit", "ann", GOOD_PASSWORD).await;
    let taken = b
        .wait_text("login-error", "name taken", |t| !t.is_empty())
        .await;
    assert!(b.present("login-name").await, "still signing in: {taken}");
    submit(&b, "register-submit", "bob", GOOD_PASSWORD).await;
    wait_chat_as(&b, "bob").await;
    b.wait_messages("to receive ann's message", |m| {
        count(m, "hello from ann") == 1
    })
    .await;
    let shown = by_sender(&b).await;
    assert!(
        shown.contains(&("ann".to_owned(), "hello from ann".to_owned())),
        "{shown:?}"
    );

    // Signing out returns to the sign-in screen; a wrong password is refused; the right one works
    // (Enter in the password field signs in).
    a.click(&testid("logout")).await;
    wait_sign_in(&a).await;
    assert!(!a.present("current-user").await);
    submit(&a, "login-submit", "ann", "not the password").await;
    a.wait_text("login-error", "bad credentials", |t| !t.is_empty())
        .await;
    a.fill("login-password", GOOD_PASSWORD).await;
    a.client
        .find(Locator::Css(&testid("login-password")))
        .await
        .expect("password input")
        .send_keys("\u{E007}")
        .await
        .expect("enter");
    wait_chat_as(&a, "ann").await;
    a.wait_messages("to show ann's history again", |m| {
        count(m, "hello from ann") == 1
    })
    .await;

    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_can_sign_in_when_guests_are_allowed() {
    let server = AppServer::start().await;
    let browser = Browser::start().await;
    let a = browser.page(&server.url()).await;
    a.wait_connected().await;
    let guest = a
        .wait_text("current-user", "a guest name", |t| !t.is_empty())
        .await;
    assert!(!a.present("logout").await, "guests cannot sign out");

    a.click(&testid("sign-in")).await;
    wait_sign_in(&a).await;
    submit(&a, "register-submit", "carol", GOOD_PASSWORD).await;
    wait_chat_as(&a, "carol").await;
    assert_ne!(guest, "carol");
    a.send("carol speaking").await;
    a.wait_messages("to send as carol", |m| {
        state_of(m, "carol speaking") == Some("sent")
    })
    .await;
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_returns_to_sign_in() {
    let (_server, _browser, a) = signed_in_with_a_short_token().await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let alert = a.text("login-error").await;
        if alert.contains("Your session expired. Please sign in again.") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no expiry message within 15 s; alert {alert:?}, status {:?}",
            a.text("connection-status").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let role = a
        .client
        .find(Locator::Css(&testid("login-error")))
        .await
        .expect("alert")
        .attr("role")
        .await
        .expect("role");
    assert_eq!(role.as_deref(), Some("alert"));

    // It stays there: no chat, no reconnecting behind the form.
    let sockets = sockets_opened_during(&a, Duration::from_secs(3)).await;
    assert_eq!(sockets, 0, "connection attempts behind the form");
    wait_sign_in(&a).await;
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_expired_while_offline_returns_to_sign_in() {
    let (mut server, _browser, a) = signed_in_with_a_short_token().await;

    // The token expires while the server is down: no 4501 can arrive, and after the restart every
    // upgrade is refused (HTTP 401), which the page sees only as failed connects.
    server.stop().await;
    let attempts = sockets_opened_during(&a, Duration::from_secs(4)).await;
    assert!(attempts > 0, "reconnects while the server is down");
    server.restart().await;
    a.wait_text("login-error", "the expiry message", |t| {
        t.contains("Your session expired. Please sign in again.")
    })
    .await;
    wait_sign_in(&a).await;
    let sockets = sockets_opened_during(&a, Duration::from_secs(3)).await;
    assert_eq!(sockets, 0, "stopped reconnecting");
    a.close().await;
}
