//! The real app in headless Chromium against the real server: relay between two pages (also on two nodes
//! of one Redis), reconnection after a server restart, and the outbox delivering what was typed while
//! the server was down, once.

use e2e::{AppServer, Browser, RedisServer, attempt, count, state_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_relay_a_message() {
    let server = AppServer::start().await;
    let browser = Browser::start().await;
    let a = browser.page(&server.url()).await;
    let b = browser.page(&server.url()).await;
    a.wait_connected().await;
    b.wait_connected().await;
    assert!(
        !a.text("current-user").await.is_empty(),
        "shows who is signed in"
    );

    a.send("hello from A").await;
    let shown = b
        .wait_messages("to include A's message", |m| count(m, "hello from A") == 1)
        .await;
    assert!(
        !shown.iter().any(|(t, _)| t.contains("You")),
        "B does not see it as its own: {shown:?}"
    );
    let own = a
        .wait_messages("to show A's message as sent", |m| {
            state_of(m, "hello from A") == Some("sent")
        })
        .await;
    assert!(
        own.iter().any(|(t, _)| t.contains("You")),
        "A sees its own message as You: {own:?}"
    );
    assert_eq!(a.input_value("message-input").await, "", "input cleared");

    // Text is shown as text: markup arrives verbatim and creates no element.
    let markup = r#"<img src=x onerror="document.title='pwned'"><b>bold</b>"#;
    a.send(markup).await;
    b.wait_messages("to show the markup as text", |m| count(m, markup) == 1)
        .await;
    for page in [&a, &b] {
        let injected = page
            .client
            .find_all(fantoccini::Locator::Css(
                "[data-testid=\"message-list\"] img, [data-testid=\"message-list\"] b",
            ))
            .await
            .expect("query");
        assert!(injected.is_empty(), "markup became elements");
        assert_ne!(page.client.title().await.expect("title"), "pwned");
    }

    // Shift+Enter starts a new line; Enter sends the two lines as one message.
    let input = a
        .client
        .find(fantoccini::Locator::Css(&e2e::testid("message-input")))
        .await
        .expect("input");
    input
        .send_keys("line one\u{E008}\u{E007}\u{E000}line two\u{E007}")
        .await
        .expect("type");
    b.wait_messages("to show both lines as one message", |m| {
        count(m, "line one\nline two") == 1
    })
    .await;

    // An http(s) address becomes a link that opens without giving the other site this page.
    a.send("the guide: https://example.com/guide. javascript:alert(1)")
        .await;
    b.wait_messages("to show the link message", |m| {
        count(m, "https://example.com/guide") == 1
    })
    .await;
    let links = b
        .client
        .find_all(fantoccini::Locator::Css("[data-testid=\"message\"] a"))
        .await
        .expect("query");
    assert_eq!(links.len(), 1, "one link, and no javascript: one");
    let link = &links[0];
    assert_eq!(
        link.attr("href").await.expect("href").as_deref(),
        Some("https://example.com/guide")
    );
    assert_eq!(
        link.attr("rel").await.expect("rel").as_deref(),
        Some("noopener noreferrer")
    );

    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_reconnects_and_the_outbox_delivers_exactly_once() {
    let mut server = AppServer::start().await;
    let browser = Browser::start().await;
    let a = browser.page(&server.url()).await;
    let b = browser.page(&server.url()).await;
    a.wait_connected().await;
    b.wait_connected().await;
    a.send("before the restart").await;
    b.wait_messages("to include the first message", |m| {
        count(m, "before the restart") == 1
    })
    .await;

    let guest = a.text("current-user").await;
    assert!(!guest.is_empty());

    server.stop().await;
    // Reconnecting, with the attempt count growing while the server stays down.
    for n in 1..=3 {
        a.wait_text(
            "connection-status",
            "reconnecting at a later attempt",
            |t| t.to_lowercase().contains("reconnecting") && attempt(t).is_some_and(|a| a >= n),
        )
        .await;
    }

    let banner = a
        .wait_text(
            "offline-banner",
            "saying what happens to what is typed",
            |t| t.contains("sent when the connection is back"),
        )
        .await;
    assert!(banner.to_lowercase().contains("offline"), "{banner}");

    a.send("typed while down").await;
    let shown = a
        .wait_messages("to show the pending message", |m| {
            count(m, "typed while down") == 1
        })
        .await;
    assert_eq!(
        state_of(&shown, "typed while down"),
        Some("pending"),
        "{shown:?}"
    );

    server.restart().await;
    a.wait_connected().await;
    b.wait_connected().await;
    a.wait_text("offline-banner", "gone once connected", str::is_empty)
        .await;
    assert_eq!(
        a.text("current-user").await,
        guest,
        "a guest keeps its name across an outage, so its resent ids still deduplicate"
    );
    a.wait_messages("to mark it sent", |m| {
        state_of(m, "typed while down") == Some("sent")
    })
    .await;
    b.wait_messages("to show it once", |m| count(m, "typed while down") == 1)
        .await;
    // A message sent now is stored after anything the resend could have stored, and B gets a room's
    // messages in order: once it shows this one, a duplicate would have shown too.
    a.send("after the resend").await;
    let shown = b
        .wait_messages("to show the later message", |m| {
            count(m, "after the resend") == 1
        })
        .await;
    assert_eq!(count(&shown, "typed while down"), 1, "{shown:?}");
    assert_eq!(count(&shown, "before the restart"), 1, "{shown:?}");

    // A reload keeps history (and nothing is doubled by the rejoin).
    a.client.refresh().await.expect("reload");
    a.wait_connected().await;
    let after = a
        .wait_messages("to show history after reload", |m| {
            count(m, "typed while down") == 1 && count(m, "before the restart") == 1
        })
        .await;
    assert_eq!(state_of(&after, "typed while down"), Some("sent"));

    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_outbox() {
    let mut server = AppServer::start().await;
    let browser = Browser::start().await;
    let a = browser.page(&server.url()).await;
    a.wait_connected().await;
    server.stop().await;
    a.wait_text("connection-status", "reconnecting", |t| {
        t.to_lowercase().contains("reconnecting")
    })
    .await;
    a.send("survives a reload").await;
    a.wait_messages("to show it pending", |m| {
        state_of(m, "survives a reload") == Some("pending")
    })
    .await;

    // Serve the page again but refuse every WebSocket, so the reloaded page cannot have sent anything:
    // what it shows as pending came from localStorage.
    server.restart_with(|c| c.max_connections = 0).await;
    a.client.refresh().await.expect("reload");
    a.wait_messages("to show it pending after the reload", |m| {
        state_of(m, "survives a reload") == Some("pending")
    })
    .await;
    server.stop().await;
    server.restart().await;
    a.wait_connected().await;
    a.wait_messages("to deliver it after the reload", |m| {
        state_of(m, "survives a reload") == Some("sent")
    })
    .await;

    let b = browser.page(&server.url()).await;
    b.wait_connected().await;
    a.send("after reload").await;
    b.wait_messages("to receive the new message", |m| {
        count(m, "after reload") == 1
    })
    .await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_on_two_nodes_of_one_redis_chat() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let on_redis = move |c: &mut server::Config| {
        c.allow_anonymous = true;
        c.redis_url = Some(url.clone());
    };
    let node_a = AppServer::start_with(on_redis.clone()).await;
    let node_b = AppServer::start_with(on_redis).await;
    assert_ne!(node_a.addr, node_b.addr);
    let browser = Browser::start().await;
    let a = browser.page(&node_a.url()).await;
    let b = browser.page(&node_b.url()).await;
    a.wait_connected().await;
    b.wait_connected().await;

    a.send("hello from node A").await;
    b.wait_messages("to include A's message, relayed through Redis", |m| {
        count(m, "hello from node A") == 1
    })
    .await;
    a.wait_messages("to show A's message as sent", |m| {
        state_of(m, "hello from node A") == Some("sent")
    })
    .await;
    b.send("and back from node B").await;
    a.wait_messages("to include B's reply", |m| {
        count(m, "and back from node B") == 1 && count(m, "hello from node A") == 1
    })
    .await;
    a.close().await;
    b.close().await;
}
