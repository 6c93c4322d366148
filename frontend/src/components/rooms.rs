//! The rooms: the list beside the chat (a drawer above it on narrow screens) with unread counts, what
//! can be done in the open room (leave it, and invite someone to it when it is private), and a field to
//! join a public room or create one.

use crate::auth::sentence;
use leptos::html::Input;
use leptos::prelude::*;
use shared::{ClientMessage, RoomId, UserName};

/// The room list (`room-list`, one `room-item` per room with `data-room`, `room-unread` when a room
/// other than the open one has something unread), the open room's `leave-room` (not in the lobby)
/// and, in a private room, `invite-name` and `invite-submit` (and, for its owner, `remove-name` and
/// `remove-submit`), then the join-or-create form. Choosing a
/// room shows it; a room asked for by name is shown by the connection once the server has let this
/// user in (`joined`).
#[component]
pub fn RoomList() -> impl IntoView {
    let connection = super::connection();
    let state = connection.state();
    let current = state.current;
    let rooms = Memo::new(move |_| state.store.with(|s| s.rooms()));
    let private = NodeRef::<Input>::new();
    // The drawer's toggle (narrow screens): choosing a room closes the drawer.
    let drawer = NodeRef::<Input>::new();
    let close_drawer = move || {
        if let Some(d) = drawer.get_untracked() {
            d.set_checked(false);
        }
    };
    // Invite and remove name a user of the open room (the server says who may).
    let member = |remove: bool| {
        let connection = connection.clone();
        Callback::new(move |name: String| {
            let user = UserName::new(name.trim()).map_err(|e| e.to_string())?;
            let room = current.get_untracked();
            connection.frame(if remove {
                ClientMessage::Remove { room, user }
            } else {
                ClientMessage::Invite { room, user }
            });
            Ok(())
        })
    };
    let (invite, remove) = (member(false), member(true));
    let leave = Callback::new({
        let connection = connection.clone();
        move |()| {
            let room = current.get_untracked();
            connection.frame(ClientMessage::Leave { room: room.clone() });
            state.store.update(|s| s.forget(&room));
            current.set(RoomId::lobby());
        }
    });
    let submit = Callback::new(move |name: String| {
        let room = RoomId::new(name.trim()).map_err(|e| e.to_string())?;
        let private = private.get_untracked();
        connection.frame(if private.as_ref().is_some_and(|p| p.checked()) {
            ClientMessage::Create {
                room: room.clone(),
                private: true,
            }
        } else {
            ClientMessage::Join {
                room: room.clone(),
                since: state.store.with_untracked(|s| s.since(&room)),
            }
        });
        state.opening.set_value(Some(room));
        close_drawer();
        if let Some(p) = private {
            p.set_checked(false);
        }
        Ok(())
    });
    view! {
        <nav class="rooms" aria-label="Rooms">
            // On narrow screens the rest folds away behind this toggle (a drawer, in CSS alone).
            <input
                type="checkbox"
                id="rooms-drawer"
                class="drawer-toggle"
                data-testid="rooms-drawer"
                node_ref=drawer
            />
            <label class="drawer-label" for="rooms-drawer">
                "Rooms"
            </label>
            <ul data-testid="room-list">
                {move || {
                    rooms
                        .get()
                        .into_iter()
                        .map(|listed| {
                            let room = listed.room.clone();
                            let here = current.get() == room;
                            view! {
                                <li>
                                    <button
                                        type="button"
                                        data-testid="room-item"
                                        data-room=room.to_string()
                                        aria-current=here.then_some("page")
                                        on:click=move |_| {
                                            current.set(room.clone());
                                            close_drawer();
                                        }
                                    >
                                        "# "
                                        {listed.room.to_string()}
                                        // In words: a lock emoji needs a font not every system has.
                                        {if listed.private { " · private" } else { "" }}
                                        {(listed.unread > 0 && !here)
                                            .then(|| {
                                                view! {
                                                    <span class="unread" data-testid="room-unread">
                                                        {listed.unread.to_string()}
                                                    </span>
                                                }
                                            })}
                                    </button>
                                </li>
                            }
                        })
                        .collect_view()
                }}
            </ul>
            {move || {
                let room = current.get();
                let private = rooms.with(|r| r.iter().any(|l| l.room == room && l.private));
                (room != RoomId::lobby())
                    .then(|| {
                        view! {
                            <div class="room-actions">
                                {private
                                    .then(|| {
                                        view! {
                                            <NameForm
                                                class="invite"
                                                field="invite-name"
                                                button="invite-submit"
                                                label="Invite"
                                                placeholder="User name"
                                                submit=invite
                                            />
                                            // For the owner (anyone else is refused by the server).
                                            <NameForm
                                                class="invite"
                                                field="remove-name"
                                                button="remove-submit"
                                                label="Remove"
                                                placeholder="User name"
                                                submit=remove
                                            />
                                        }
                                    })}
                                <button type="button" data-testid="leave-room" on:click=move |_| leave.run(())>
                                    "Leave"
                                </button>
                            </div>
                        }
                    })
            }}
            <NameForm
                class="new-room"
                field="new-room-name"
                button="new-room-submit"
                label="Join or create"
                placeholder="Room name"
                submit
            />
            <label class="new-room-private">
                <input type="checkbox" data-testid="new-room-private" node_ref=private />
                " Create it private"
            </label>
        </nav>
    }
}

/// One field and a button (`field` and `button` are their test ids); `submit` gets the text and says
/// what is wrong with it, shown as the notice (the field keeps the text then). The field is read when the
/// form is submitted, not followed keystroke by keystroke.
#[component]
fn NameForm(
    class: &'static str,
    field: &'static str,
    button: &'static str,
    label: &'static str,
    placeholder: &'static str,
    submit: Callback<String, Result<(), String>>,
) -> impl IntoView {
    let state = super::connection().state();
    let input = NodeRef::<Input>::new();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(input) = input.get_untracked() else {
            return;
        };
        match submit.run(input.value()) {
            Ok(()) => input.set_value(""),
            Err(e) => state.notice.set(Some(sentence(&e))),
        }
    };
    view! {
        <form class=class on:submit=on_submit>
            <input
                data-testid=field
                aria-label=label
                placeholder=placeholder
                maxlength="64"
                node_ref=input
            />
            <button type="submit" data-testid=button>
                {label}
            </button>
        </form>
    }
}
