//! A deploy while a page is open: the page's code is now older than the app the server serves, so after
//! it reconnects it offers a reload; the reloaded page is current and offers nothing.

use e2e::{AppServer, Browser, Page, dist_dir, testid};
use fantoccini::Locator;
use std::path::Path;

/// A copy of the built app in `to`, which a test may change as a new build would.
fn copy_app(to: &Path) {
    for entry in std::fs::read_dir(dist_dir()).expect("the built app") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

async fn banner(page: &Page) -> String {
    page.text("update-banner").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_deploy_an_open_page_offers_a_reload() {
    let app = tempfile::tempdir().expect("tempdir");
    copy_app(app.path());
    let dir = app.path().to_owned();
    let mut server = AppServer::start_with(move |c| {
        c.allow_anonymous = true;
        c.static_dir = dir.clone();
    })
    .await;
    let browser = Browser::start().await;
    let page = browser.page(&server.url()).await;
    page.wait_connected().await;
    assert_eq!(banner(&page).await, "", "nothing to offer before a deploy");

    // A restart with the same app is not a deploy.
    server.stop().await;
    server.restart().await;
    page.wait_connected().await;
    assert_eq!(banner(&page).await, "");

    // A new build: the page changes (as it does whenever any asset does).
    server.stop().await;
    for name in ["index.html", "index.html.br", "index.html.gz"] {
        let _ = std::fs::remove_file(app.path().join(name));
    }
    let page_html = std::fs::read_to_string(dist_dir().join("index.html")).expect("page");
    std::fs::write(
        app.path().join("index.html"),
        page_html.replace("<title>Chat</title>", "<title>Chat </title>"),
    )
    .expect("write the new page");
    server.restart().await;
    page.wait_text("update-banner", "offering a reload", |t| {
        t.contains("new version")
    })
    .await;
    page.client
        .find(Locator::Css(&format!("{} button", testid("update-banner"))))
        .await
        .expect("the reload button")
        .click()
        .await
        .expect("click");
    page.wait_connected().await;
    assert_eq!(banner(&page).await, "", "the reloaded page is current");
    page.close().await;
}
