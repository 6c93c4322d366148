//! The sign-in / register screen: one form, two buttons. Enter (or "Sign in") signs in; "Register" creates
//! the account, which also signs in. The form's own checks and the server's refusals show in the alert.

use crate::api;
use crate::auth::{Action, precheck};
use leptos::html::Input;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::UserName;

/// The form. `notice` is shown in the alert until the user acts (e.g. "Your session expired…");
/// `on_signed_in` gets the account's name once the server has set the session cookie; `on_guest`, offered
/// only when the server lets guests in, goes back to the chat without an account.
#[component]
pub fn SignIn(
    notice: Option<String>,
    allow_anonymous: bool,
    on_signed_in: Callback<UserName>,
    on_guest: Callback<()>,
) -> impl IntoView {
    // The fields are read when the form is submitted, not followed keystroke by keystroke.
    let name = NodeRef::<Input>::new();
    let password = NodeRef::<Input>::new();
    let alert = RwSignal::new(notice);
    let busy = RwSignal::new(false);

    let submit = move |action: Action| {
        if busy.get_untracked() {
            return;
        }
        let value =
            |field: NodeRef<Input>| field.get_untracked().map(|f| f.value()).unwrap_or_default();
        let credentials = match precheck(action, &value(name), &value(password)) {
            Ok(c) => c,
            Err(why) => {
                alert.set(Some(why));
                return;
            }
        };
        busy.set(true);
        alert.set(None);
        spawn_local(async move {
            let result = match action {
                Action::SignIn => api::login(&credentials).await,
                Action::Register => api::register(&credentials).await,
            };
            match result {
                Ok(done) => on_signed_in.run(done.name),
                Err(failure) => {
                    // The form may be gone already; then there is nothing to update.
                    let _ = alert.try_set(Some(failure.to_string()));
                    let _ = busy.try_set(false);
                }
            }
        });
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        submit(Action::SignIn);
    };

    view! {
        <div class="app">
            <header class="status-bar">
                <h1>"Chat"</h1>
            </header>
            <main class="sign-in">
                <form class="sign-in-form" on:submit=on_submit aria-labelledby="sign-in-title">
                    <h2 id="sign-in-title">"Sign in or register"</h2>
                    <label for="login-name">"Name"</label>
                    <input
                        id="login-name"
                        type="text"
                        data-testid="login-name"
                        autocomplete="username"
                        autocapitalize="none"
                        spellcheck="false"
                        required
                        maxlength=UserName::MAX_LEN.to_string()
                        node_ref=name
                    />
                    <label for="login-password">"Password"</label>
                    <input
                        id="login-password"
                        type="password"
                        data-testid="login-password"
                        autocomplete="current-password"
                        required
                        node_ref=password
                    />
                    <p class="alert" role="alert" data-testid="login-error">
                        {move || alert.get().unwrap_or_default()}
                    </p>
                    <div class="sign-in-buttons">
                        <button type="submit" data-testid="login-submit" disabled=move || busy.get()>
                            "Sign in"
                        </button>
                        <button
                            type="button"
                            data-testid="register-submit"
                            disabled=move || busy.get()
                            on:click=move |_| submit(Action::Register)
                        >
                            "Register"
                        </button>
                    </div>
                    {allow_anonymous
                        .then(|| {
                            view! {
                                <button
                                    type="button"
                                    class="link"
                                    data-testid="continue-as-guest"
                                    on:click=move |_| on_guest.run(())
                                >
                                    "Continue as a guest"
                                </button>
                            }
                        })}
                </form>
            </main>
        </div>
    }
}
