//! History in the real app: a new browser opening a room with 1,000 messages sees the newest page at once,
//! and scrolling to the top (then the "Load older" button, as from the keyboard) pages back to the first
//! message, each message shown once and in order; the room opens again where the user left it.

use e2e::{AppServer, Browser, Page, WAIT, eventually, room_item, testid};
use fantoccini::Locator;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const MESSAGES: u64 = 1_000;

/// Stores `n` chats in the lobby through a plain WebSocket client, waiting for every ack.
async fn fill_lobby(server: &AppServer, n: u64) {
    let url = format!("ws://{}/ws", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    for i in 1..=n {
        let frame = format!(r#"{{"type":"chat","text":"old message {i}","id":"fill-{i}"}}"#);
        ws.send(Message::text(frame)).await.expect("send");
    }
    let mut acks = 0;
    while acks < n {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("acks in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = frame
            && text.as_str().contains(r#""type":"ack""#)
        {
            acks += 1;
        }
    }
}

/// The `data-seq` of every message shown, top to bottom.
async fn shown_seqs(page: &Page) -> Vec<u64> {
    let seqs = page
        .client
        .execute(
            "return [...document.querySelectorAll('[data-testid=message]')]
                 .map(m => Number(m.dataset.seq));",
            vec![],
        )
        .await
        .expect("script");
    serde_json::from_value(seqs).expect("numbers")
}

/// Polls until more than `count` messages are shown; returns them.
async fn wait_more_than(page: &Page, count: usize) -> Vec<u64> {
    eventually("an older page", async || {
        let seqs = shown_seqs(page).await;
        if seqs.len() > count {
            Ok(seqs)
        } else {
            Err(format!("{} messages shown", seqs.len()))
        }
    })
    .await
}

async fn load_older_shown(page: &Page) -> bool {
    let button = page
        .client
        .find(Locator::Css(&testid("load-older")))
        .await
        .expect("the load-older button is in the list");
    button.is_displayed().await.expect("displayed?")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_browser_sees_the_newest_page_and_pages_back_to_the_first_message() {
    let server = AppServer::start_with(|c| {
        c.allow_anonymous = true;
        c.rate_limit = 0.0;
    })
    .await;
    fill_lobby(&server, MESSAGES).await;
    let browser = Browser::start().await;
    let page = browser.page(&server.url()).await;
    page.wait_connected().await;

    let newest = wait_more_than(&page, 0).await;
    let join_page = shared::JOIN_PAGE as u64;
    assert_eq!(
        newest,
        (MESSAGES - join_page + 1..=MESSAGES).collect::<Vec<_>>(),
        "the newest page, at once"
    );
    assert!(load_older_shown(&page).await, "older messages are offered");

    // Scrolling to the top asks for the page before.
    page.client
        .execute(
            "document.querySelector('[data-testid=message-list]').scrollTop = 0;",
            vec![],
        )
        .await
        .expect("scroll");
    let mut shown = wait_more_than(&page, newest.len()).await;
    assert_eq!(shown[0], MESSAGES - 2 * join_page + 1);

    // The button does the same, from the keyboard, until the first message is there.
    while load_older_shown(&page).await {
        let before = shown.len();
        let button = page
            .client
            .find(Locator::Css(&testid("load-older")))
            .await
            .expect("button");
        button.send_keys("\u{E007}").await.expect("press Enter");
        shown = wait_more_than(&page, before).await;
        assert!(shown.len() <= MESSAGES as usize, "no duplicates");
    }
    assert_eq!(
        shown,
        (1..=MESSAGES).collect::<Vec<_>>(),
        "every message once, in order"
    );

    // The room keeps where the user left it: scrolled back to the middle, another room, back again.
    let from_bottom = "const l = document.querySelector('[data-testid=message-list]');
                       return Math.round(l.scrollHeight - l.scrollTop);";
    page.client
        .execute(
            "const l = document.querySelector('[data-testid=message-list]');
             l.scrollTop = Math.floor(l.scrollHeight / 2);
             l.dispatchEvent(new Event('scroll'));",
            vec![],
        )
        .await
        .expect("scroll");
    let read = async || {
        let at = page
            .client
            .execute(from_bottom, vec![])
            .await
            .expect("read");
        at.as_i64().expect("pixels")
    };
    let left_at = read().await;
    page.fill("new-room-name", "elsewhere").await;
    page.click(&testid("new-room-submit")).await;
    wait_shown_count(&page, |n| n == 0).await;
    page.click(&room_item("lobby")).await;
    wait_shown_count(&page, |n| n == MESSAGES as usize).await;
    eventually(
        &format!("the lobby {left_at} pixels from its bottom"),
        async || {
            let now = read().await;
            if (now - left_at).abs() <= 1 {
                Ok(())
            } else {
                Err(now)
            }
        },
    )
    .await;
    page.close().await;
}

/// Polls until the number of shown messages satisfies `check`.
async fn wait_shown_count(page: &Page, check: impl Fn(usize) -> bool) {
    eventually("a number of messages", async || {
        let n = shown_seqs(page).await.len();
        if check(n) { Ok(()) } else { Err(n) }
    })
    .await;
}
