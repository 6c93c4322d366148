//! Rooms in the real app: the room list with the current room marked, joining a public room by name,
//! creating a private one, inviting a member (to whom it shows up at once) and removing them, an
//! outsider refused and shown nothing of it, unread counts that clear when the room is opened,
//! leaving, the list following the account to another browser; the typing indicator, shown to the
//! others and gone when the notice lapses; who is in the room, a user with two tabs counted once; and
//! mentions.

use e2e::{AppServer, Browser, Page, count, eventually, room_item, testid};
use fantoccini::Locator;

const PASSWORD: &str = "correct horse battery";

/// The rooms in the list, in order, each with its unread count ("" when none) and whether it is the
/// current one.
async fn rooms(page: &Page) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let Ok(items) = page
        .client
        .find_all(Locator::Css(&testid("room-item")))
        .await
    else {
        return out;
    };
    for item in items {
        let room = item
            .attr("data-room")
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let unread = match item.find(Locator::Css(&testid("room-unread"))).await {
            Ok(badge) => badge.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let current = item.attr("aria-current").await.ok().flatten().as_deref() == Some("page");
        out.push((room, unread, current));
    }
    out
}

/// Polls until `check` accepts the room list; returns it.
async fn wait_rooms(
    page: &Page,
    what: &str,
    check: impl Fn(&[(String, String, bool)]) -> bool,
) -> Vec<(String, String, bool)> {
    eventually(&format!("the rooms {what}"), async || {
        let list = rooms(page).await;
        if check(&list) { Ok(list) } else { Err(list) }
    })
    .await
}

/// Whether `room` is listed and current.
fn current(list: &[(String, String, bool)], room: &str) -> bool {
    list.iter().any(|(r, _, now)| r == room && *now)
}

/// Joins (or, with `private`, creates) `room` through the form.
async fn open(page: &Page, room: &str, private: bool) {
    page.fill("new-room-name", room).await;
    if private {
        page.click(&testid("new-room-private")).await;
    }
    page.click(&testid("new-room-submit")).await;
}

/// Waits until a message containing `text` is shown and stored.
async fn wait_shown(page: &Page, text: &str) {
    page.wait_messages(&format!("to show {text:?}"), |m| {
        m.iter()
            .any(|(t, s)| t.contains(text) && s.as_deref() != Some("pending"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_and_private_rooms_invites_outsiders_unread_counts_and_leaving() {
    let server = AppServer::start_with(|c| c.allow_anonymous = false).await;
    let browser = Browser::start().await;
    let ann = browser.page(&server.url()).await;
    ann.register("ann", PASSWORD).await;
    let bob = browser.page(&server.url()).await;
    bob.register("bob", PASSWORD).await;
    let cat = browser.page(&server.url()).await;
    cat.register("cat", PASSWORD).await;
    let only_lobby = |l: &[(String, String, bool)]| l.len() == 1 && current(l, "lobby");
    wait_rooms(&ann, "to be the lobby", only_lobby).await;

    // A public room: joined by name from the form, then shown.
    open(&ann, "dev", false).await;
    wait_rooms(&ann, "to show dev, current", |l| current(l, "dev")).await;
    ann.send("hello dev").await;
    wait_shown(&ann, "hello dev").await;
    open(&bob, "dev", false).await;
    wait_rooms(&bob, "to show dev, current", |l| current(l, "dev")).await;
    wait_shown(&bob, "hello dev").await;
    bob.send("hi ann").await;
    wait_shown(&ann, "hi ann").await;

    // A private room, and bob invited to it.
    open(&ann, "team", true).await;
    wait_rooms(&ann, "to show team, current", |l| current(l, "team")).await;
    assert_eq!(
        count(&ann.messages().await, "hello dev"),
        0,
        "a room of its own"
    );
    ann.fill("invite-name", "bob").await;
    ann.click(&testid("invite-submit")).await;
    ann.wait_text("notice", "the invitation confirmed", |t| {
        t.contains("bob can now join team.")
    })
    .await;
    ann.send("secret plan").await;
    wait_shown(&ann, "secret plan").await;
    ann.save_screenshot("private-room-wide").await;
    // The room shows up in bob's list by itself, with what he has not read.
    wait_rooms(&bob, "to list team, unread", |l| {
        l.iter().any(|(r, unread, _)| r == "team" && unread == "1")
    })
    .await;
    bob.click(&room_item("team")).await;
    wait_rooms(&bob, "to show team, current", |l| current(l, "team")).await;
    wait_shown(&bob, "secret plan").await;

    // cat was not invited: refused, and nothing of the room shows.
    open(&cat, "team", false).await;
    cat.wait_text("notice", "a refusal", |t| !t.is_empty())
        .await;
    let list = rooms(&cat).await;
    assert!(list.iter().all(|(r, ..)| r != "team"), "{list:?}");
    assert_eq!(count(&cat.messages().await, "secret plan"), 0);

    // Unread: a message in dev while bob is in team; opening dev clears it.
    ann.click(&room_item("dev")).await;
    wait_rooms(&ann, "to have dev current", |l| current(l, "dev")).await;
    ann.send("back in dev").await;
    wait_rooms(&bob, "to count one unread in dev", |l| {
        l.iter().any(|(r, unread, _)| r == "dev" && unread == "1")
    })
    .await;
    bob.click(&room_item("dev")).await;
    wait_shown(&bob, "back in dev").await;
    wait_rooms(&bob, "to count nothing unread", |l| {
        current(l, "dev") && l.iter().all(|(_, unread, _)| unread.is_empty())
    })
    .await;

    // Leaving dev: it leaves the list and the lobby shows.
    bob.click(&testid("leave-room")).await;
    wait_rooms(&bob, "without dev", |l| {
        current(l, "lobby") && l.iter().all(|(r, ..)| r != "dev")
    })
    .await;

    // bob's rooms follow him to another browser: team (kept), not dev (left).
    let elsewhere = browser.page(&server.url()).await;
    elsewhere.sign_in("bob", PASSWORD).await;
    wait_rooms(&elsewhere, "to list team and the lobby", |l| {
        let names: Vec<&str> = l.iter().map(|(r, ..)| r.as_str()).collect();
        names == ["lobby", "team"]
    })
    .await;
    elsewhere.click(&room_item("team")).await;
    wait_shown(&elsewhere, "secret plan").await;

    // The owner removes bob: where he was reading the room, the lobby shows, and it leaves his list.
    ann.click(&room_item("team")).await;
    ann.fill("remove-name", "bob").await;
    ann.click(&testid("remove-submit")).await;
    ann.wait_text("notice", "the removal confirmed", |t| {
        t.contains("bob is no longer in team.")
    })
    .await;
    for page in [&bob, &elsewhere] {
        wait_rooms(page, "without team, in the lobby", |l| {
            current(l, "lobby") && l.iter().all(|(r, ..)| r != "team")
        })
        .await;
    }
    for page in [ann, bob, cat, elsewhere] {
        page.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_shown_to_the_others_and_lapses() {
    let server = AppServer::start().await;
    let browser = Browser::start().await;
    let typist = browser.page(&server.url()).await;
    let reader = browser.page(&server.url()).await;
    typist.wait_connected().await;
    reader.wait_connected().await;
    let name = typist
        .wait_text("current-user", "a guest name", |t| !t.is_empty())
        .await;
    let input = typist
        .client
        .find(Locator::Css(&testid("message-input")))
        .await
        .expect("input");
    input.send_keys("half a thou").await.expect("type");
    let shown = reader
        .wait_text("typing-indicator", "the typist", |t| !t.is_empty())
        .await;
    assert_eq!(shown, format!("{name} is typing…"));
    assert_eq!(typist.text("typing-indicator").await, "", "not to oneself");
    // No further keystroke: the notice lapses (5 s after it was sent).
    reader
        .wait_text("typing-indicator", "empty again", str::is_empty)
        .await;
    // Typing again, then sending: the message ends the notice.
    input.send_keys("ght").await.expect("type");
    reader
        .wait_text("typing-indicator", "the typist again", |t| !t.is_empty())
        .await;
    input.send_keys("\u{E007}").await.expect("enter");
    wait_shown(&reader, "half a thought").await;
    assert_eq!(
        reader.text("typing-indicator").await,
        "",
        "the message ends it"
    );
    typist.close().await;
    reader.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_counts_a_user_with_two_tabs_once_and_the_timeline_says_who_came_and_went() {
    let server = AppServer::start_with(|c| c.allow_anonymous = false).await;
    let browser = Browser::start().await;
    let ann = browser.page(&server.url()).await;
    ann.register("ann", PASSWORD).await;
    let bob = browser.page(&server.url()).await;
    bob.register("bob", PASSWORD).await;
    let ann_again = browser.page(&server.url()).await;
    ann_again.sign_in("ann", PASSWORD).await;
    // Two users, one of them with two tabs: two here, each named once.
    let here = |t: &str, count: &str| t.starts_with(&format!("{count} here: "));
    bob.wait_text("presence-list", "2 here", |t| here(t, "2"))
        .await;
    bob.wait_texts("presence-user", &["ann", "bob"]).await;
    ann_again.wait_texts("presence-user", &["ann", "bob"]).await;
    // One of ann's tabs goes, then cat arrives: ann is still counted, once, and only cat's arrival is a
    // line in the timeline.
    ann.close().await;
    let cat = browser.page(&server.url()).await;
    cat.register("cat", PASSWORD).await;
    bob.wait_texts("presence-user", &["ann", "bob", "cat"])
        .await;
    assert!(here(&bob.text("presence-list").await, "3"));
    bob.wait_texts("system-line", &["cat joined"]).await;
    cat.wait_texts("presence-user", &["ann", "bob", "cat"])
        .await;
    assert!(
        cat.texts("system-line").await.is_empty(),
        "cat was not there before"
    );
    // ann's last tab goes: she is gone, and the timeline says so; a message comes after the lines.
    ann_again.close().await;
    bob.wait_texts("presence-user", &["bob", "cat"]).await;
    bob.wait_texts("system-line", &["cat joined", "ann left"])
        .await;
    cat.send("still here").await;
    bob.wait_messages("with cat's", |m| count(m, "still here") == 1)
        .await;
    let rows = bob
        .client
        .execute(
            "return [...document.querySelectorAll('[data-testid=message],[data-testid=system-line]')]
                 .map(e => e.textContent.includes('still here') ? 'message' : e.dataset.testid);",
            vec![],
        )
        .await
        .expect("rows");
    assert_eq!(
        rows,
        serde_json::json!(["system-line", "system-line", "message"]),
        "the lines, then the message"
    );
    cat.wait_texts("system-line", &["ann left"]).await;
    bob.save_screenshot("presence-wide").await;
    cat.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_stands_out_and_notifies_a_page_in_the_background() {
    let server = AppServer::start_with(|c| c.allow_anonymous = false).await;
    let browser = Browser::start().await;
    let ann = browser.page(&server.url()).await;
    ann.register("ann", PASSWORD).await;
    let bob = browser.page(&server.url()).await;
    bob.register("bob", PASSWORD).await;
    // The offer to notify shows exactly while the browser has not decided.
    let permission = bob
        .client
        .execute("return Notification.permission;", vec![])
        .await
        .expect("permission");
    assert_eq!(
        bob.present("notify-mentions").await,
        permission == "default",
        "permission {permission}"
    );
    // bob's page goes to the background with notifications allowed (a stand-in for the browser's
    // Notification that records what is raised).
    bob.client
        .execute(
            "window.raised = [];
             window.Notification = class {
                 constructor(title) { window.raised.push(title); }
                 static get permission() { return 'granted'; }
                 static requestPermission() { return Promise.resolve('granted'); }
             };
             Object.defineProperty(document, 'hidden', { get: () => true, configurable: true });",
            vec![],
        )
        .await
        .expect("stand-ins");
    for text in [
        "@bob look at this",
        "nothing for bob",
        "@bobby is someone else",
    ] {
        ann.send(text).await;
    }
    wait_shown(&bob, "@bobby is someone else").await;
    let mentioned: Vec<String> = {
        let mut out = Vec::new();
        for m in bob
            .client
            .find_all(Locator::Css(".message.mention"))
            .await
            .expect("messages")
        {
            out.push(m.text().await.expect("text"));
        }
        out
    };
    assert_eq!(mentioned.len(), 1, "{mentioned:?}");
    assert!(mentioned[0].contains("@bob look at this"), "{mentioned:?}");
    let raised = bob
        .client
        .execute("return window.raised;", vec![])
        .await
        .expect("raised");
    assert_eq!(
        raised,
        serde_json::json!(["ann in #lobby: @bob look at this"])
    );
    // ann's own page marks nothing: her message names bob.
    let on_ann = ann
        .client
        .find_all(Locator::Css(".message.mention"))
        .await
        .expect("messages");
    assert!(on_ann.is_empty());
    ann.close().await;
    bob.close().await;
}
