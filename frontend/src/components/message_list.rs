//! A room's messages, oldest first, kept scrolled to the newest unless the user scrolled up. Scrolling to
//! the top (or the "Load older" button, for the keyboard) asks for the page before the oldest message
//! shown, and the view stays on the message the user was reading when it arrives. A room the user left
//! scrolled back opens where they left it.

use crate::store::{Delivery, Shown};
use crate::text::{self, Part};
use leptos::either::Either;
use leptos::html::Ol;
use leptos::prelude::*;
use shared::{RoomId, Seq, Timestamp};
use wasm_bindgen::JsValue;

/// How close to the bottom (in pixels) still counts as "at the newest message".
const STICK_PX: i32 = 40;

/// The list (`data-testid="message-list"`), one `data-testid="message"` per entry.
#[component]
pub fn MessageList(room: RoomId) -> impl IntoView {
    let connection = super::connection();
    let state = connection.state();
    let list = NodeRef::<Ol>::new();
    // Where the user left this room, if not at its newest message: restored when the list is drawn.
    let left_at = state.store.with_untracked(|s| s.scrolled(&room));
    let at_bottom = StoredValue::new(left_at.is_none());
    // While an older page is on its way (or the list is drawn again): the distance from the list's
    // bottom to keep.
    let anchor = StoredValue::new(left_at);
    let entries = {
        let room = room.clone();
        Memo::new(move |_| {
            let mut shown = state.store.with(|s| s.shown(&room));
            state.here.with(|h| h.add_lines(&room, &mut shown));
            shown
        })
    };
    let older_than = {
        let room = room.clone();
        move || state.store.with(|s| s.older_than(&room))
    };
    let load_older = {
        let room = room.clone();
        move || {
            let before = state.store.with_untracked(|s| s.older_than(&room));
            let (Some(before), Some(el)) = (before, list.get_untracked()) else {
                return;
            };
            anchor.set_value(Some(el.scroll_height() - el.scroll_top()));
            connection.load_older(room.clone(), before);
        }
    };

    // Syncs the DOM's scroll position with the entries (the outside world, hence an Effect).
    Effect::new(move || {
        entries.track();
        let Some(el) = list.get() else { return };
        if let Some(from_bottom) = anchor.get_value() {
            anchor.set_value(None);
            request_animation_frame(move || el.set_scroll_top(el.scroll_height() - from_bottom));
        } else if at_bottom.get_value() {
            request_animation_frame(move || el.set_scroll_top(el.scroll_height()));
        }
    });
    let on_scroll = {
        let load_older = load_older.clone();
        move |_: web_sys::Event| {
            let Some(el) = list.get_untracked() else {
                return;
            };
            let from_bottom = el.scroll_height() - el.scroll_top();
            let bottom = from_bottom - el.client_height() < STICK_PX;
            at_bottom.set_value(bottom);
            // Kept for the next time the room opens. Not a change anyone needs to hear of: nothing is
            // redrawn or saved for it.
            state
                .store
                .update_untracked(|s| s.scroll(&room, (!bottom).then_some(from_bottom)));
            if el.scroll_top() == 0 && anchor.get_value().is_none() {
                load_older();
            }
        }
    };

    view! {
        // A live region: screen readers announce the messages added to it.
        <ol
            class="messages"
            data-testid="message-list"
            node_ref=list
            on:scroll=on_scroll
            aria-live="polite"
            aria-relevant="additions"
            aria-label="Messages"
        >
            <li class="older" hidden=move || older_than().is_none()>
                <button type="button" data-testid="load-older" on:click=move |_| load_older()>
                    "Load older messages"
                </button>
            </li>
            <For
                each=move || grouped(entries.get())
                // With the delivery state and the grouping, so that a row is drawn again when they change.
                key=|(entry, continues, day)| {
                    (entry.key.clone(), entry.delivery, *continues, day.clone())
                }
                children=move |(entry, continues, day)| {
                    view! {
                        {day.map(|d| view! { <li class="day" role="separator">{d}</li> })}
                        <Message entry continues me=state.user />
                    }
                }
            />
        </ol>
    }
}

/// One message; the text is rendered as text nodes and `http(s)` links ([`text::parts`]), never as HTML.
/// A message of someone else that mentions the current user has the class `mention`. A join or leave
/// line is a quiet `system-line` instead.
#[component]
fn Message(entry: Shown, continues: bool, me: RwSignal<Option<shared::UserName>>) -> impl IntoView {
    // A join or leave line is drawn as a message without sender, time or state (the style sheet hides
    // them), not as a view of its own: one kind of row fewer in the page's wasm.
    let system = entry.delivery == Delivery::System;
    let own = entry.sender.is_none() && !system;
    let sender = entry.sender.clone();
    let name = move || match &sender {
        Some(s) if me.get().as_ref() != Some(s) => s.to_string(),
        _ => "You".to_owned(),
    };
    // Someone else's message naming the current user (`@name`) stands out. (Decided when the row is
    // drawn: the name is known by then, except for a guest's saved messages before the welcome.)
    let mention = me.with_untracked(|me| {
        me.as_ref().is_some_and(|me| {
            entry.sender.as_ref().is_some_and(|s| s != me)
                && text::mentions(entry.text.as_str(), me.as_str())
        })
    });
    let label = match entry.delivery {
        Delivery::Received | Delivery::System => None,
        Delivery::Pending => Some("sending…"),
        Delivery::Sent => Some("sent"),
        Delivery::Failed => Some("not sent"),
    };
    view! {
        <li
            class="message"
            class:own=own
            class:continues=continues
            class:mention=mention
            class:system=system
            data-testid=if system { "system-line" } else { "message" }
            data-state=entry.delivery.as_str()
            data-seq=entry.seq.map(|seq: Seq| seq.to_string())
        >
            <span class="sender">{name}</span>
            <time class="time" datetime=entry.timestamp.to_string()>
                {shown_time(entry.timestamp)}
            </time>
            <p class="text">
                {text::parts(entry.text.as_str())
                    .into_iter()
                    .map(|part| match part {
                        Part::Text(t) => Either::Left(t.to_owned()),
                        Part::Link(url) => {
                            Either::Right(
                                view! {
                                    <a href=url.to_owned() rel="noopener noreferrer" target="_blank">
                                        {url.to_owned()}
                                    </a>
                                },
                            )
                        }
                    })
                    .collect_view()}
            </p>
            {label.map(|l| view! { <span class="delivery">{l}</span> })}
        </li>
    }
}

/// Messages within this long of the one before, from the same sender, continue its group (the name is
/// not repeated).
const GROUP_MS: i64 = 5 * 60 * 1000;

/// Each entry with whether it continues the group of the message before, and the day's name when it is the
/// first of a day (in the browser's time zone). The browser's calendar is asked once per day, not per
/// message: the list is grouped again whenever a message arrives.
fn grouped(entries: Vec<Shown>) -> Vec<(Shown, bool, Option<String>)> {
    let today = Day::of(js_sys::Date::now() as i64).name;
    let mut day: Option<Day> = None;
    let mut before: Option<(Option<shared::UserName>, i64)> = None;
    entries
        .into_iter()
        .map(|entry| {
            let at = entry.timestamp.unix_ms();
            let label = match &day {
                Some(d) if d.holds(at) => None,
                _ => {
                    let new = Day::of(at);
                    let name = if new.name == today {
                        "Today".to_owned()
                    } else {
                        new.name.clone()
                    };
                    day = Some(new);
                    Some(name)
                }
            };
            // A join or leave line has no sender: it neither continues a group nor starts one (a message
            // of the reader's after it shows "You" again).
            let line = entry.delivery == Delivery::System;
            let continues = !line
                && label.is_none()
                && before
                    .as_ref()
                    .is_some_and(|(s, t)| *s == entry.sender && at - t < GROUP_MS);
            before = (!line).then(|| (entry.sender.clone(), at));
            (entry, continues, label)
        })
        .collect()
}

/// A day in the browser's time zone: from its local midnight to the next one.
struct Day {
    start: i64,
    end: i64,
    /// The browser's name for it, e.g. `Thu Nov 26 2026`.
    name: String,
}

impl Day {
    fn of(unix_ms: i64) -> Self {
        let date = js_sys::Date::new(&JsValue::from_f64(unix_ms as f64));
        let name = String::from(date.to_date_string());
        date.set_hours(0);
        date.set_minutes(0);
        date.set_seconds(0);
        let start = date.set_milliseconds(0) as i64;
        // The next midnight by the calendar, so that a day with a clock change is 23 or 25 hours.
        let end = date.set_date(date.get_date() + 1) as i64;
        Self { start, end, name }
    }

    fn holds(&self, unix_ms: i64) -> bool {
        (self.start..self.end).contains(&unix_ms)
    }
}

/// When, as shown: relative within the hour ("now", "12 min ago"), else `HH:MM` in the browser's time
/// zone (the day is in the list's day separators).
fn shown_time(t: Timestamp) -> String {
    let minutes = (js_sys::Date::now() as i64 - t.unix_ms()) / 60_000;
    match minutes {
        ..1 => "now".to_owned(),
        1..60 => format!("{minutes} min ago"),
        _ => {
            let date = js_sys::Date::new(&JsValue::from_f64(t.unix_ms() as f64));
            format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
        }
    }
}
