//! Who the page speaks as, and the decisions that follow from the server's answers: which screen to show
//! after `GET /api/session`, what a connection that keeps failing to open means for the session (gone, or
//! a guest token to forget), and what to check before asking the server to register or sign in. Pure, so unit-tested natively; the HTTP calls
//! are in [`crate::api`], the screens in [`crate::components`].

use crate::storage;
use shared::UserName;
use shared::api::{Credentials, SessionInfo, check_password};

/// What the sign-in screen says after the session ended under the user (token expired, or refused).
pub const EXPIRED: &str = "Your session expired. Please sign in again.";

/// Who the chat view connects as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An anonymous guest (only when the server allows it); the server names it `guest-…`.
    Guest,
    /// A signed-in account; the session cookie identifies it to the server.
    Account(UserName),
}

impl Identity {
    /// Where this identity's history and outbox are saved: guests keep the original key, each account has
    /// its own, so another account in the same browser never sees or resends them.
    pub fn store_key(&self) -> String {
        match self {
            Self::Guest => storage::STORE_KEY.to_owned(),
            Self::Account(name) => format!("{}.user.{name}", storage::STORE_KEY),
        }
    }

    /// Where the guest reconnect token lives; `None` for an account, which must connect with its cookie.
    pub fn token_key(&self) -> Option<String> {
        match self {
            Self::Guest => Some(storage::TOKEN_KEY.to_owned()),
            Self::Account(_) => None,
        }
    }

    /// The account's name; `None` for a guest.
    pub fn account(&self) -> Option<&UserName> {
        match self {
            Self::Guest => None,
            Self::Account(name) => Some(name),
        }
    }
}

/// What the page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    /// Asking the server who we are.
    Loading,
    /// The sign-in / register form, with a message for the user (e.g. [`EXPIRED`]) if any.
    SignIn {
        /// Shown in the form's alert until the user acts.
        notice: Option<String>,
    },
    /// The chat, connected as this identity.
    Chat(Identity),
}

/// The screen to start with, given the server's answer to `GET /api/session`.
pub fn initial_screen(info: &SessionInfo) -> Screen {
    match (&info.name, info.allow_anonymous) {
        (Some(name), _) => Screen::Chat(Identity::Account(name.clone())),
        (None, true) => Screen::Chat(Identity::Guest),
        (None, false) => Screen::SignIn { notice: None },
    }
}

/// Whether `identity` can no longer connect, given a fresh `GET /api/session` answer taken while its
/// connection attempts kept failing: an account whose session is gone (or is now another account's), or a
/// guest on a server that no longer lets guests in.
pub fn session_lost(identity: &Identity, info: &SessionInfo) -> bool {
    match identity {
        Identity::Account(name) => info.name.as_ref() != Some(name),
        Identity::Guest => info.name.is_none() && !info.allow_anonymous,
    }
}

/// After this many consecutive connection attempts that never opened, the chat asks `GET /api/session`
/// what they mean (a refused upgrade, HTTP 401, cannot be told apart from a network failure in a browser).
pub const RECHECK_AFTER: u32 = 2;

/// What the chat does about connection attempts that keep failing before the socket opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailingOpens {
    /// Keep reconnecting: the server did not answer (an outage proves nothing), or nothing is wrong yet.
    KeepTrying,
    /// The server answers and still refuses the guest's upgrade: the stored guest token is bad (e.g.
    /// signed with a key the server no longer has). Forget it, so the next attempt connects as a new guest.
    DropGuestToken,
    /// The session is gone: stop connecting and sign in again.
    SessionLost,
}

/// The decision after a failed attempt that never opened, with `answer` the fresh `GET /api/session`
/// answer (`None`: no answer) and `answered_before` whether the server answered the check after an
/// earlier failed attempt of the same run (so it was reachable and an upgrade has failed since). Dropping
/// the token only then keeps a guest's name across an outage: with a new name, a resent message whose
/// ack was lost would be stored twice.
pub fn after_failed_opens(
    identity: &Identity,
    answer: Option<&SessionInfo>,
    answered_before: bool,
) -> FailingOpens {
    match answer {
        None => FailingOpens::KeepTrying,
        Some(info) if session_lost(identity, info) => FailingOpens::SessionLost,
        Some(_) if answered_before && identity.token_key().is_some() => {
            FailingOpens::DropGuestToken
        }
        Some(_) => FailingOpens::KeepTrying,
    }
}

/// What the form asks the server for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /api/login`.
    SignIn,
    /// `POST /api/register` (which also signs in).
    Register,
}

/// Credentials from the form (the name trimmed), or why they need not be sent: the same rules as the
/// server's for a new account; signing in only needs both fields filled (old passwords may predate rules).
pub fn precheck(action: Action, name: &str, password: &str) -> Result<Credentials, String> {
    let name = name.trim();
    if name.is_empty() || password.is_empty() {
        return Err("Enter a name and a password.".to_owned());
    }
    if action == Action::Register {
        UserName::new(name).map_err(|e| sentence(&e.to_string()))?;
        check_password(name, password).map_err(sentence)?;
    }
    Ok(Credentials {
        name: name.to_owned(),
        password: password.to_owned(),
    })
}

/// `text` with a capital first letter and a final period, for messages shown to the user.
pub fn sentence(text: &str) -> String {
    // The server's messages are English: ASCII case spares the wasm Unicode's case tables.
    let mut out = text.trim().to_owned();
    if let Some(first) = out.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    if !out.is_empty() && !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> UserName {
        UserName::new(s).expect("valid name")
    }

    fn info(name: Option<&str>, allow_anonymous: bool) -> SessionInfo {
        SessionInfo {
            name: name.map(self::name),
            expires_at: None,
            allow_anonymous,
        }
    }

    #[test]
    fn the_first_screen_follows_the_session() {
        assert_eq!(
            initial_screen(&info(Some("ann"), false)),
            Screen::Chat(Identity::Account(name("ann")))
        );
        assert_eq!(
            initial_screen(&info(Some("ann"), true)),
            Screen::Chat(Identity::Account(name("ann")))
        );
        assert_eq!(
            initial_screen(&info(None, true)),
            Screen::Chat(Identity::Guest)
        );
        assert_eq!(
            initial_screen(&info(None, false)),
            Screen::SignIn { notice: None }
        );
    }

    #[test]
    fn a_session_is_lost_when_the_server_no_longer_knows_it() {
        let ann = Identity::Account(name("ann"));
        assert!(!session_lost(&ann, &info(Some("ann"), false)));
        assert!(session_lost(&ann, &info(None, false)));
        assert!(
            session_lost(&ann, &info(None, true)),
            "expired, guests or not"
        );
        assert!(session_lost(&ann, &info(Some("bob"), false)));
        assert!(!session_lost(&Identity::Guest, &info(None, true)));
        assert!(session_lost(&Identity::Guest, &info(None, false)));
    }

    #[test]
    fn a_guest_token_is_dropped_only_when_the_server_answers_and_upgrades_still_fail() {
        use FailingOpens::*;
        let guest = Identity::Guest;
        let ann = Identity::Account(name("ann"));
        let guests_ok = info(None, true);
        assert_eq!(after_failed_opens(&guest, None, true), KeepTrying, "outage");
        assert_eq!(
            after_failed_opens(&guest, Some(&guests_ok), false),
            KeepTrying
        );
        assert_eq!(
            after_failed_opens(&guest, Some(&guests_ok), true),
            DropGuestToken
        );
        assert_eq!(
            after_failed_opens(&guest, Some(&info(None, false)), false),
            SessionLost
        );
        let ann_ok = info(Some("ann"), false);
        assert_eq!(
            after_failed_opens(&ann, Some(&ann_ok), true),
            KeepTrying,
            "no token"
        );
        assert_eq!(
            after_failed_opens(&ann, Some(&info(None, false)), false),
            SessionLost
        );
        assert_eq!(after_failed_opens(&ann, None, true), KeepTrying);
    }

    #[test]
    fn each_account_has_its_own_store_and_no_guest_token() {
        let ann = Identity::Account(name("ann"));
        let bob = Identity::Account(name("bob"));
        assert_eq!(Identity::Guest.store_key(), storage::STORE_KEY);
        assert_ne!(ann.store_key(), bob.store_key());
        assert_ne!(ann.store_key(), Identity::Guest.store_key());
        assert_eq!(
            Identity::Guest.token_key().as_deref(),
            Some(storage::TOKEN_KEY)
        );
        assert_eq!(ann.token_key(), None);
        assert_eq!(ann.account(), Some(&name("ann")));
        assert_eq!(Identity::Guest.account(), None);
    }

    #[test]
    fn the_form_is_checked_before_asking_the_server() {
        let ok = precheck(Action::Register, "  ann ", "correct horse").expect("valid");
        assert_eq!(ok.name, "ann");
        assert_eq!(ok.password, "correct horse");
        let weak = precheck(Action::Register, "ann", "short").unwrap_err();
        assert_eq!(weak, "Password must be at least 8 characters.");
        assert!(precheck(Action::Register, "a b", "correct horse").is_err());
        assert!(precheck(Action::SignIn, "ann", "").is_err());
        assert!(precheck(Action::SignIn, "", "x").is_err());
        assert!(
            precheck(Action::SignIn, "ann", "short").is_ok(),
            "sign-in leaves password rules to the server"
        );
    }

    #[test]
    fn sentences_start_big_and_end_with_a_period() {
        assert_eq!(sentence("name taken"), "Name taken.");
        assert_eq!(sentence("Done!"), "Done!");
        assert_eq!(sentence(""), "");
    }
}
