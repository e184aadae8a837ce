//! A connection whose client stops reading fails once it has taken no byte
//! for `write_timeout`. hyper has no write timer: a client that never read
//! a stream held its connection, the stream's sequence (its KV cells, its
//! slot), its tenant's concurrency and its ledger row for ever, while the
//! answer waited in the socket. Failing the write makes hyper drop the
//! response body, which cancels the request like a client that hangs up.
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Sleep};

pub struct WriteTimeout<IO> {
    io: IO,
    timeout: Duration,
    /// Set while a write waits for the client; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> WriteTimeout<IO> {
    pub fn new(io: IO, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            stalled: None,
        }
    }

    /// Starts or checks the stall timer after a write that could not go on.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took nothing for {timeout:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(&mut self, p: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match p {
            Poll::Pending => self.stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteTimeout<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.io).poll_write(cx, buf);
        self.progress(p, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.progress(p, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let p = Pin::new(&mut self.io).poll_flush(cx);
        self.progress(p, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let p = Pin::new(&mut self.io).poll_shutdown(cx);
        self.progress(p, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_reader_that_stops_fails_the_writer_after_the_timeout() {
        let timeout = Duration::from_millis(200);
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut w = WriteTimeout::new(ours, timeout);
        w.write_all(&[1; 64]).await.expect("fits the buffer");
        let mut one = [0u8; 32];
        tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut one)
            .await
            .expect("read");
        // A write that waited, then went on, does not count against the next.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(timeout / 2).await;
            tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut one)
                .await
                .expect("read");
            theirs
        });
        w.write_all(&[2; 64]).await.expect("the reader takes 32");
        tokio::time::sleep(timeout).await;
        let _theirs = reader.await.expect("reader");
        let start = std::time::Instant::now();
        let err = w.write_all(&[3; 64]).await.expect_err("nobody reads");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= timeout);
    }
}
