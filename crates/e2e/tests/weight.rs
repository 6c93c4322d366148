//! What a first visit costs: every HTTP response until the sign-in screen shows (the page, its script,
//! style and wasm module, and any request the app makes before it shows), headers included, as Chromium
//! counts them on a fresh profile over plain http on 127.0.0.1, where it accepts brotli. The budget is
//! less than the article's Next.js page (136 KB of gzipped JavaScript for one list and one input).

use e2e::{AppServer, Browser};

/// Bytes a first visit may transfer (README, "Weight").
const BUDGET: u64 = 130_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_visit_transfers_at_most_the_budget() {
    let server = AppServer::start_with(|_| {}).await; // accounts required: the sign-in screen
    let browser = Browser::start().await;
    let page = browser.page(&server.url()).await;
    page.wait_present("login-name", true).await;
    let entries = page
        .client
        .execute(
            "return performance.getEntriesByType('navigation')
                 .concat(performance.getEntriesByType('resource'))
                 .map(e => [e.name, e.transferSize, e.encodedBodySize, e.decodedBodySize]);",
            vec![],
        )
        .await
        .expect("resource timing");
    let entries: Vec<(String, u64, u64, u64)> = serde_json::from_value(entries).expect("entries");
    let total: u64 = entries.iter().map(|(_, transferred, ..)| transferred).sum();
    let listing: String = entries
        .iter()
        .map(|(name, t, encoded, decoded)| {
            format!("\n  {t:>7} bytes ({encoded} body, {decoded} decoded) {name}")
        })
        .collect();
    println!("first visit: {total} bytes{listing}");
    let wasm = entries
        .iter()
        .find(|(name, ..)| name.ends_with(".wasm"))
        .unwrap_or_else(|| panic!("no wasm module among:{listing}"));
    assert!(wasm.2 < wasm.3, "the wasm module came compressed:{listing}");
    assert!(
        total <= BUDGET,
        "a first visit transferred {total} bytes, over the budget of {BUDGET}:{listing}"
    );
    page.close().await;
}
