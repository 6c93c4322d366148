//! The bytes of one upgraded connection: read through one buffer per thread, written from one buffer
//! of whole frames.
//!
//! **Reading.** tungstenite keeps a read buffer in every connection for as long as the connection
//! lives, and asks the socket for at most that buffer's size per read. With many idle connections, that
//! buffer is a large share of their memory; with a small one, a client that sends many frames at once
//! costs one system call per frame or two. [`Io`] gives both: tungstenite's buffer is small (128 bytes),
//! and each read from the socket goes into this thread's [`SCRATCH_BYTES`] buffer, of which tungstenite
//! takes what it asked for. The rest waits in the connection, in an allocation of its exact size, until
//! tungstenite takes it (with no system call). An idle connection holds no read buffer of its own here.
//!
//! **Writing.** A server's frames are never masked, so a room message's frame is the same bytes for
//! every recipient: it is encoded once ([`text_frame`]) and each connection copies those bytes into its
//! write buffer ([`Io::push_frame`]), where tungstenite would build the frame again for each of them.
//! A connection's own frames (acks, errors, replies) are encoded straight into the buffer
//! ([`Io::push_text`]), and so is whatever tungstenite writes (pongs, the close frame). A flush writes
//! the buffer with one `send`. (Giving the kernel each shared frame by reference, with `writev`, saved
//! the copies but cost more in the kernel than they did.) Frames enter the buffer whole and in the order
//! they were queued, so the stream is the same as if one writer had written them all. The buffer takes
//! frames while it holds less than [`QUEUE_BYTES`] (a larger frame still fits in an empty buffer); past
//! that the writer waits for the socket. The buffer is allocated when a frame comes ([`FIRST_BYTES`], so
//! that a batch of frames usually takes one allocation) and freed once it is written out: an idle
//! connection holds no write buffer either.

use bytes::{Buf, Bytes};
use std::{
    cell::RefCell,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::protocol::frame::{
        FrameHeader,
        coding::{Control, Data, OpCode},
    },
};

/// The most one read from the socket takes.
pub const SCRATCH_BYTES: usize = 16 * 1024;
/// The write buffer takes no more frames once it holds this much: the writer flushes first.
pub const QUEUE_BYTES: usize = 64 * 1024;
/// The write buffer's first allocation.
pub const FIRST_BYTES: usize = 1024;

thread_local! {
    /// Where reads from sockets land on this thread, before tungstenite takes its part.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// A text frame with `payload`, as a server sends it (final, unmasked): the bytes written to every
/// connection it goes to.
pub fn text_frame(payload: &[u8]) -> Bytes {
    let mut bytes = Vec::new();
    put_frame(&mut bytes, OpCode::Data(Data::Text), payload);
    Bytes::from(bytes)
}

/// Appends a final, unmasked frame to `out` (tungstenite's encoding of the header).
fn put_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let header = FrameHeader {
        is_final: true,
        opcode,
        ..FrameHeader::default()
    };
    out.reserve(header.len(payload.len() as u64) + payload.len());
    header
        .format(payload.len() as u64, out)
        .expect("formatting into memory cannot fail");
    out.extend_from_slice(payload);
}

/// The payload of a frame made by [`text_frame`].
#[cfg(test)]
pub fn frame_payload(frame: &[u8]) -> &[u8] {
    let header = match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    &frame[header..]
}

/// An upgraded connection's socket, what was read from it that tungstenite has not taken yet, and what
/// is waiting to be written.
#[derive(Debug)]
pub struct Io {
    tcp: TcpStream,
    unread: Bytes,
    /// Whole frames to write, in order.
    out: Vec<u8>,
}

impl Io {
    /// `tcp`, with `unread` (bytes that came in with the upgrade request) to be read first. `unread` is
    /// copied: it may be a slice of the HTTP connection's whole read buffer, kept alive by any slice.
    pub fn new(tcp: TcpStream, unread: &[u8]) -> Self {
        let unread = if unread.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(unread)
        };
        Self {
            tcp,
            unread,
            out: Vec::new(),
        }
    }

    /// Whether the write buffer takes more frames now (it holds less than [`QUEUE_BYTES`]).
    pub fn has_room(&self) -> bool {
        self.out.len() < QUEUE_BYTES
    }

    /// Queues a frame encoded once for many connections ([`text_frame`]).
    pub fn push_frame(&mut self, frame: &[u8]) {
        self.buffer().extend_from_slice(frame);
    }

    /// Queues a text frame with `payload`.
    pub fn push_text(&mut self, payload: &[u8]) {
        put_frame(self.buffer(), OpCode::Data(Data::Text), payload);
    }

    /// Queues a Ping frame with no payload.
    pub fn push_ping(&mut self) {
        put_frame(self.buffer(), OpCode::Control(Control::Ping), &[]);
    }

    /// The write buffer, allocated if it was not.
    fn buffer(&mut self) -> &mut Vec<u8> {
        if self.out.capacity() == 0 {
            self.out.reserve(FIRST_BYTES);
        }
        &mut self.out
    }

    /// Moves what `buf` has room for from `unread`, freeing `unread`'s memory once it is all taken.
    fn take_unread(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        if n == self.unread.len() {
            self.unread = Bytes::new();
        } else {
            self.unread.advance(n);
        }
    }

    /// Writes the buffer to the socket until it is empty (`Ready`) or the socket takes no more
    /// (`Pending`, woken when it does).
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut written = 0;
        let result = loop {
            if written == self.out.len() {
                break Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.tcp).poll_write(cx, &self.out[written..]) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                other => break other.map_ok(|_| ()),
            }
        };
        if written == self.out.len() {
            self.out = Vec::new();
        } else {
            self.out.drain(..written);
        }
        result
    }
}

/// A WebSocket whose frames can be queued past tungstenite: what a session writes.
pub trait Frames {
    /// Whether the write buffer takes more frames now ([`Io::has_room`]).
    fn has_room(&self) -> bool;
    /// Queues a frame encoded once for many connections ([`Io::push_frame`]).
    fn push_frame(&mut self, frame: &[u8]);
    /// Queues a text frame with `payload` ([`Io::push_text`]).
    fn push_text(&mut self, payload: &[u8]);
    /// Queues a Ping frame ([`Io::push_ping`]).
    fn push_ping(&mut self);
}

impl Frames for WebSocketStream<Io> {
    fn has_room(&self) -> bool {
        self.get_ref().has_room()
    }

    fn push_frame(&mut self, frame: &[u8]) {
        self.get_mut().push_frame(frame);
    }

    fn push_text(&mut self, payload: &[u8]) {
        self.get_mut().push_text(payload);
    }

    fn push_ping(&mut self) {
        self.get_mut().push_ping();
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.unread.is_empty() {
            this.take_unread(buf);
            return Poll::Ready(Ok(()));
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let mut read = ReadBuf::new(scratch);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut read))?;
            let got = read.filled();
            let n = got.len().min(buf.remaining());
            buf.put_slice(&got[..n]);
            if n < got.len() {
                this.unread = Bytes::copy_from_slice(&got[n..]);
            }
            Poll::Ready(Ok(()))
        })
    }
}

impl AsyncWrite for Io {
    /// What tungstenite writes (whole frames: it writes its buffer in one call) joins the buffer. A full
    /// buffer is written out first; the bytes are taken all at once or not at all, so that a frame is
    /// never cut by one queued after it.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.has_room() {
            ready!(this.poll_write_out(cx))?;
        }
        this.buffer().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_write_out(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Io, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (Io::new(server, b"early "), client)
    }

    #[tokio::test]
    async fn small_reads_get_every_byte_in_order_and_keep_nothing_once_taken() {
        let (mut io, mut client) = pair().await;
        let sent: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.expect("write");
        drop(client);

        let mut got = Vec::new();
        let mut chunk = [0u8; 100];
        loop {
            let n = io.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            assert!(n <= chunk.len());
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(&got[..6], b"early ");
        assert_eq!(got[6..], sent[..], "every byte, in order");
        assert!(io.unread.is_empty(), "nothing held after the end");
    }

    /// Reads frames made by [`put_frame`] (final, unmasked) until `n` are read: their opcodes and
    /// payloads.
    async fn read_frames(client: &mut TcpStream, n: usize) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while frames.len() < n {
            let mut head = [0u8; 2];
            client.read_exact(&mut head).await.expect("header");
            assert_eq!(head[0] & 0x80, 0x80, "final");
            assert_eq!(head[1] & 0x80, 0, "a server's frames are not masked");
            let len = match head[1] & 0x7f {
                126 => u64::from(client.read_u16().await.expect("length")),
                127 => client.read_u64().await.expect("length"),
                short => u64::from(short),
            };
            let mut payload = vec![0u8; len as usize];
            client.read_exact(&mut payload).await.expect("payload");
            frames.push((head[0] & 0x0f, payload));
        }
        frames
    }

    #[test]
    fn a_text_frame_is_encoded_as_tungstenite_reads_it_at_every_length_format() {
        for len in [0, 1, 125, 126, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let frame = text_frame(&payload);
            let mut cursor = std::io::Cursor::new(&frame[..]);
            let (header, length) = FrameHeader::parse(&mut cursor)
                .expect("valid")
                .expect("whole header");
            assert!(header.is_final && header.mask.is_none());
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert_eq!(length, len as u64);
            assert_eq!(
                cursor.position() as usize + len,
                frame.len(),
                "header then payload"
            );
            assert_eq!(frame_payload(&frame), &payload[..]);
        }
    }

    #[tokio::test]
    async fn frames_shared_own_and_tungstenites_reach_the_peer_whole_and_in_order() {
        let (mut io, mut client) = pair().await;
        let shared = text_frame(b"shared");
        io.push_frame(&shared);
        io.push_text(b"own 1");
        io.write_all(&text_frame(b"written")).await.expect("write");
        io.push_ping();
        io.push_frame(&shared);
        io.push_text(b"own 2");
        io.flush().await.expect("flush");
        assert!(io.out.is_empty());
        let got = read_frames(&mut client, 6).await;
        let (text, ping) = (1, 9);
        let want: [(u8, &[u8]); 6] = [
            (text, b"shared"),
            (text, b"own 1"),
            (text, b"written"),
            (ping, b""),
            (text, b"shared"),
            (text, b"own 2"),
        ];
        assert_eq!(got, want.map(|(op, payload)| (op, payload.to_vec())));
    }

    #[tokio::test]
    async fn a_full_queue_waits_for_a_peer_that_reads_and_loses_nothing() {
        let (mut io, mut client) = pair().await;
        // Far more than the socket's buffers hold while the peer reads nothing.
        let count = 2_000;
        let reader = tokio::spawn(async move {
            tokio::task::yield_now().await;
            read_frames(&mut client, count).await
        });
        for i in 0..count {
            let payload = format!("{i:04}").repeat(100);
            if !io.has_room() {
                io.flush().await.expect("flush");
                assert!(io.has_room(), "room once written out");
            }
            if i % 2 == 0 {
                io.push_frame(&text_frame(payload.as_bytes()));
            } else {
                io.push_text(payload.as_bytes());
            }
            assert!(io.out.len() <= QUEUE_BYTES + payload.len() + 4);
        }
        io.flush().await.expect("flush");
        let got = reader.await.expect("reader");
        for (i, (_, payload)) in got.iter().enumerate() {
            assert_eq!(
                payload,
                format!("{i:04}").repeat(100).as_bytes(),
                "frame {i}"
            );
        }
        assert_eq!(io.out.capacity(), 0, "memory given back");
    }
}
