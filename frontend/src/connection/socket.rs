//! A thin wrapper around one `web_sys::WebSocket`: its callbacks become a stream of [`SocketEvent`]s, and
//! dropping it detaches the callbacks and closes the socket. This is the only file that calls the browser's
//! WebSocket API.

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use shared::ClientMessage;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// Something that happened on the socket.
#[derive(Debug)]
pub(crate) enum SocketEvent {
    /// The handshake succeeded.
    Open,
    /// A text frame arrived.
    Text(String),
    /// The socket closed (or never opened), with the close code.
    Closed(u16),
}

/// One WebSocket and its event stream.
pub(crate) struct Socket {
    ws: WebSocket,
    events: UnboundedReceiver<SocketEvent>,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    /// Starts connecting to `url`; fails only for a URL the browser refuses outright.
    pub(crate) fn connect(url: &str) -> Result<Self, JsValue> {
        let ws = WebSocket::new(url)?;
        let (tx, events) = unbounded();
        let open_tx = tx.clone();
        let on_open = Closure::<dyn FnMut()>::new(move || {
            let _ = open_tx.unbounded_send(SocketEvent::Open);
        });
        let on_message = callback(&tx, |e: MessageEvent| {
            e.data().as_string().map(SocketEvent::Text)
        });
        let on_close = callback(&tx, |e: CloseEvent| Some(SocketEvent::Closed(e.code())));
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Self {
            ws,
            events,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// The next event; a socket whose callbacks are gone reads as closed.
    pub(crate) async fn next(&mut self) -> SocketEvent {
        self.events
            .next()
            .await
            .unwrap_or(SocketEvent::Closed(1006))
    }

    /// Sends one frame. A frame that cannot be sent is lost with the connection; the outbox resends chats.
    pub(crate) fn send(&self, message: &ClientMessage) {
        let _ = self.ws.send_with_str(&message.to_json());
    }

    /// Closes with `code` (1000, or 4000-4999).
    pub(crate) fn close(&self, code: u16) {
        let _ = self.ws.close_with_code(code);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// A JS callback that forwards what `map` makes of its argument into `tx`.
fn callback<A: wasm_bindgen::convert::FromWasmAbi + 'static>(
    tx: &UnboundedSender<SocketEvent>,
    map: impl Fn(A) -> Option<SocketEvent> + 'static,
) -> Closure<dyn FnMut(A)> {
    let tx = tx.clone();
    Closure::new(move |arg: A| {
        if let Some(event) = map(arg) {
            let _ = tx.unbounded_send(event);
        }
    })
}
