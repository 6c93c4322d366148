//! The page's entry point: mounts [`frontend::App`] on `<body>`.

fn main() {
    leptos::mount::mount_to_body(frontend::App);
}
