//! Writing a download out in batches: the store's client hands over chunks of a few KiB, and a
//! write (and a wake-up of the restore action reading the other end of a pipe) per chunk costs
//! more than the bytes. Chunks are gathered up to [`WRITE_SIZE`] without copying, then written
//! at once: with one `writev` to an output that takes vectors (an action's stdin pipe), else
//! copied once into one buffer for the others (files, the exec stream). Gathering instead of a
//! `BufWriter` saves a copy of every byte on the way into the action (with the read-ahead of
//! `Repository::download_into`, about 7 % of a restore's time in a pod; `docs/benchmarks.md`).

use std::io::IoSlice;

use tokio::io::{AsyncWrite, AsyncWriteExt as _};

/// How much is gathered before it is written.
pub(crate) const WRITE_SIZE: usize = 1 << 20;

/// Chunks waiting to be written.
pub(crate) struct Batch<B> {
    chunks: Vec<B>,
    len: usize,
}

impl<B> Default for Batch<B> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<B: AsRef<[u8]>> Batch<B> {
    /// Adds `chunk`; whether the batch should now be written.
    pub(crate) fn push(&mut self, chunk: B) -> bool {
        self.len += chunk.as_ref().len();
        self.chunks.push(chunk);
        self.len >= WRITE_SIZE
    }

    /// The gathered chunks.
    pub(crate) fn chunks(&self) -> &[B] {
        &self.chunks
    }

    /// Writes the gathered chunks to every one of `outs`, in order.
    pub(crate) async fn write_to(
        &self,
        outs: &mut [&mut (dyn AsyncWrite + Unpin + Send)],
    ) -> std::io::Result<()> {
        let mut whole: Option<Vec<u8>> = None;
        for out in outs.iter_mut() {
            if out.is_write_vectored() {
                write_vectored_all(&mut **out, &self.chunks).await?;
            } else {
                let bytes = whole.get_or_insert_with(|| joined(&self.chunks, self.len));
                out.write_all(bytes).await?;
            }
        }
        Ok(())
    }
}

/// `chunks` (`len` bytes in all) in one buffer.
fn joined<B: AsRef<[u8]>>(chunks: &[B], len: usize) -> Vec<u8> {
    let mut joined = Vec::with_capacity(len);
    for chunk in chunks {
        joined.extend_from_slice(chunk.as_ref());
    }
    joined
}

/// Writes all of `chunks` to `out` with as few `writev` calls as it takes.
async fn write_vectored_all<B: AsRef<[u8]>>(
    out: &mut (dyn AsyncWrite + Unpin + Send),
    chunks: &[B],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c.as_ref())).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = out.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that takes at most `limit` bytes per call, vectored or not.
    struct Slow {
        got: Vec<u8>,
        limit: usize,
        vectored: bool,
        calls: usize,
    }

    impl AsyncWrite for Slow {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.limit);
            self.got.extend_from_slice(&buf[..n]);
            self.calls += 1;
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut room = self.limit;
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(room);
                self.got.extend_from_slice(&buf[..take]);
                (room, n) = (room - take, n + take);
            }
            self.calls += 1;
            std::task::Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn slow(limit: usize, vectored: bool) -> Slow {
        Slow {
            got: Vec::new(),
            limit,
            vectored,
            calls: 0,
        }
    }

    #[tokio::test]
    async fn every_output_gets_every_byte_in_order_despite_short_writes() {
        let chunks: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 7 + usize::from(i)]).collect();
        let expected: Vec<u8> = chunks.concat();
        let (mut vectored, mut plain) = (slow(50, true), slow(33, false));
        let mut batch = Batch::default();
        for chunk in chunks {
            batch.push(chunk);
        }
        batch
            .write_to(&mut [&mut vectored, &mut plain])
            .await
            .unwrap();
        assert_eq!(vectored.got, expected);
        assert_eq!(plain.got, expected);
        assert!(
            vectored.calls < 40,
            "{} writes for 40 chunks",
            vectored.calls
        );
    }

    #[test]
    fn a_batch_is_due_at_the_write_size() {
        let mut batch = Batch::default();
        assert!(!batch.push(vec![0u8; WRITE_SIZE - 1]));
        assert!(batch.push(vec![0u8; 1]));
    }
}
