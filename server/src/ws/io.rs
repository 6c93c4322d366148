//! The bytes of one upgraded connection, read through one buffer per thread.
//!
//! tungstenite keeps a read buffer in every connection for as long as the connection lives, and asks the
//! socket for at most that buffer's size per read. With many idle connections, that buffer is a large
//! share of their memory; with a small one, a client that sends many frames at once costs one system
//! call per frame or two. [`Io`] gives both: tungstenite's buffer is small (128 bytes),
//! and each read from the socket goes into this thread's [`SCRATCH_BYTES`] buffer, of which tungstenite
//! takes what it asked for. The rest waits in the connection, in an allocation of its exact size, until
//! tungstenite takes it (with no system call). An idle connection holds no read buffer of its own here.

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

/// The most one read from the socket takes.
pub const SCRATCH_BYTES: usize = 16 * 1024;

thread_local! {
    /// Where reads from sockets land on this thread, before tungstenite takes its part.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// An upgraded connection's socket, and what was read from it that tungstenite has not taken yet.
#[derive(Debug)]
pub struct Io {
    tcp: TcpStream,
    unread: Bytes,
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
        Self { tcp, unread }
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
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
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

    #[tokio::test]
    async fn writes_reach_the_peer() {
        let (mut io, mut client) = pair().await;
        io.write_all(b"hello").await.expect("write");
        io.flush().await.expect("flush");
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");
    }
}
