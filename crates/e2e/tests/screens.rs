//! The main screen in both themes, wide and narrow, and offline, saved as PNG files under
//! `target/screenshots/` (test artifacts to look at); the theme follows the system's setting and body
//! text keeps AA contrast, messages in a row from one sender are grouped under one name and one day
//! separator, and on a narrow screen the rooms are a drawer that opens and closes. The
//! narrow window is as narrow as headless Chromium's window goes (500 pixels).

use e2e::{AppServer, Browser, Page, room_item, testid};
use fantoccini::Locator;

/// The relative luminance (0 black to 1 white) of a CSS `rgb(r, g, b)` colour.
fn luminance(css: &str) -> f64 {
    let channels: Vec<f64> = css
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .take(3)
        .map(|c| c.trim().parse::<f64>().expect("a channel") / 255.0)
        .map(|c| {
            if c <= 0.039_28 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        })
        .collect();
    0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]
}

async fn computed(page: &Page, selector: &str, property: &str) -> String {
    let script = format!(
        "return getComputedStyle(document.querySelector('{selector}')).getPropertyValue('{property}');"
    );
    let value = page.client.execute(&script, vec![]).await.expect("style");
    value.as_str().expect("a string").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_themes_at_both_widths_are_saved_and_the_theme_follows_the_system() {
    let mut server = AppServer::start().await;
    let browser = Browser::start().await;
    let first = browser.page(&server.url()).await;
    first.wait_connected().await;
    for text in [
        "Morning! Standup in ten minutes?",
        "Deploy went fine; p99 stayed flat.",
        "Paging back through history works.",
    ] {
        first.send(text).await;
    }
    first
        .wait_messages("to be stored", |m| {
            m.len() == 3 && m.iter().all(|(_, s)| s.as_deref() == Some("sent"))
        })
        .await;
    first.close().await;

    let dark_flags = [
        "--force-dark-mode",
        "--blink-settings=preferredColorScheme=0",
    ];
    for (theme, flags) in [("light", &[][..]), ("dark", &dark_flags[..])] {
        for (name, width, height) in [("wide", 1280, 800), ("narrow", 375, 740)] {
            let size = format!("--window-size={width},{height}");
            let mut all: Vec<&str> = flags.to_vec();
            all.push(&size);
            let page = browser.page_with(&server.url(), &all).await;
            page.wait_connected().await;
            page.wait_messages("the history", |m| m.len() == 3).await;
            // On a narrow screen the rooms are a drawer, closed until its toggle is pressed.
            let drawer = name == "narrow";
            let list_shown = async || {
                let list = page.client.find(Locator::Css(&testid("room-list"))).await;
                list.expect("the room list")
                    .is_displayed()
                    .await
                    .expect("shown?")
            };
            if drawer {
                assert!(!list_shown().await, "the drawer starts closed");
                page.click("label[for=rooms-drawer]").await;
                assert!(list_shown().await, "the drawer opens");
            }
            // A second room in the list, then back to the lobby. Choosing a room closes the drawer.
            page.fill("new-room-name", "design").await;
            page.click(&testid("new-room-submit")).await;
            page.wait_messages("the new room, empty", <[_]>::is_empty)
                .await;
            if drawer {
                assert!(!list_shown().await, "the drawer closed");
                page.click("label[for=rooms-drawer]").await;
            }
            page.click(&room_item("lobby")).await;
            page.wait_messages("the history", |m| m.len() == 3).await;
            assert!(!drawer || !list_shown().await, "the drawer closed again");
            // One sender, three messages in a row: one name, one day separator.
            let layout = page
                .client
                .execute(
                    "return [document.querySelectorAll('.message.continues').length,
                             [...document.querySelectorAll('.day')].map(d => d.textContent)];",
                    vec![],
                )
                .await
                .expect("layout");
            assert_eq!(layout, serde_json::json!([2, ["Today"]]), "grouping");
            let background = computed(&page, ".app", "background-color").await;
            let text = computed(&page, ".text", "color").await;
            let (bg, fg) = (luminance(&background), luminance(&text));
            match theme {
                "dark" => assert!(bg < 0.1 && fg > 0.6, "dark: {background} behind {text}"),
                _ => assert!(bg > 0.9 && fg < 0.1, "light: {background} behind {text}"),
            }
            // WCAG AA for body text: a contrast ratio of at least 4.5.
            let ratio = (bg.max(fg) + 0.05) / (bg.min(fg) + 0.05);
            assert!(ratio >= 4.5, "{theme}: contrast {ratio:.1}");
            page.save_screenshot(&format!("{theme}-{name}")).await;
            page.close().await;
        }
    }

    // Offline: the banner says what happens to what is typed, above the history kept on the page.
    let page = browser.page(&server.url()).await;
    page.wait_connected().await;
    page.wait_messages("the history", |m| m.len() == 3).await;
    server.stop().await;
    page.wait_text("offline-banner", "shown", |t| t.contains("offline"))
        .await;
    page.send("typed while offline").await;
    page.wait_messages("the pending message", |m| m.len() == 4)
        .await;
    page.save_screenshot("offline-wide").await;
    page.close().await;
}
