//! Shared-memory pools through a service: a pool shared once, buffers lent in calls and in
//! stream items, given back when the other side drops them, the sender held back (never
//! blocked for ever) by a receiver that keeps them; both clients, both servers, fd counts
//! checked.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::*;
use fdrpc::{Pool, PoolBuffer, PoolError, PoolReader, PoolView, SharedPool};
use futures::StreamExt;

#[fdrpc::service]
pub trait Frames {
    /// Maps the caller's pool; answers with a pool of the server's own, for `frames`.
    async fn attach(&self, pool: SharedPool) -> SharedPool;
    /// Sums the buffer (every byte read once) and gives it back.
    async fn checksum(&self, buf: PoolBuffer) -> i64;
    /// Opens the buffer and keeps it; returns how many it keeps.
    async fn keep(&self, buf: PoolBuffer) -> i64;
    /// Gives back every buffer kept.
    async fn release_kept(&self) -> i64;
    /// `n` buffers of the server's pool, buffer `i` filled with `i`, `len` bytes each.
    async fn frames(&self, n: i64, len: i64) -> fdrpc::Stream<PoolBuffer>;
}

#[derive(Default)]
pub struct FramesImpl {
    reader: Mutex<Option<PoolReader>>,
    kept: Mutex<Vec<PoolView>>,
    own: Mutex<Option<Pool>>,
}

impl FramesImpl {
    fn open(&self, buf: PoolBuffer) -> Result<PoolView, PoolError> {
        let reader = self.reader.lock().unwrap().clone();
        reader.expect("attach first").open(buf)
    }
}

fn sum(view: &PoolView) -> i64 {
    let mut s = 0i64;
    view.for_each_chunk(|c| s += c.iter().map(|&b| i64::from(b)).sum::<i64>());
    s
}

impl Frames for FramesImpl {
    async fn attach(&self, pool: SharedPool) -> SharedPool {
        *self.reader.lock().unwrap() = Some(pool.map().unwrap());
        let own = Pool::new("frames-server", 64 * 1024, 3).unwrap();
        let shared = own.share().unwrap();
        *self.own.lock().unwrap() = Some(own);
        shared
    }
    async fn checksum(&self, buf: PoolBuffer) -> i64 {
        match self.open(buf) {
            Ok(view) => sum(&view),
            Err(_) => -1,
        }
    }
    async fn keep(&self, buf: PoolBuffer) -> i64 {
        let view = self.open(buf).unwrap();
        let mut kept = self.kept.lock().unwrap();
        kept.push(view);
        kept.len() as i64
    }
    async fn release_kept(&self) -> i64 {
        let mut kept = self.kept.lock().unwrap();
        let n = kept.len() as i64;
        kept.clear();
        n
    }
    async fn frames(&self, n: i64, len: i64) -> fdrpc::Stream<PoolBuffer> {
        let pool = self.own.lock().unwrap().clone().expect("attach first");
        fdrpc::Stream::from_stream(futures::stream::unfold(0, move |i| {
            let pool = pool.clone();
            async move {
                if i == n {
                    return None;
                }
                // A slot comes free when the client drops the item it got before (waited for
                // without blocking the runtime's thread).
                let mut buf = pool.buffer().await.ok()?;
                buf[..len as usize].fill(i as u8);
                Some((buf.lend(len as usize).unwrap(), i + 1))
            }
        }))
    }
}

fn fill(pool: &Pool, byte: u8, len: usize) -> PoolBuffer {
    let mut buf = pool.buffer_within(Duration::from_secs(20)).unwrap();
    buf[..len].fill(byte);
    buf.lend(len).unwrap()
}

#[test]
fn buffers_lent_in_calls_come_back_and_the_pool_is_reused() {
    run_async(async {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let server = serve_connection(b, FramesServer::new(FramesImpl::default()));
        let c = FramesClient::new(fdrpc::Client::from_std(a).unwrap());
        let pool = Pool::new("frames-client", 256 * 1024, 4).unwrap();
        let theirs = c
            .attach(pool.share().unwrap())
            .await
            .unwrap()
            .map()
            .unwrap();
        for round in 0..50u8 {
            let len = 200_000 + usize::from(round);
            let lent = fill(&pool, round, len);
            let got = c.checksum(lent).await.unwrap();
            assert_eq!(got, i64::from(round) * len as i64, "round {round}");
            // The server dropped its view before answering: the slot is back.
            assert_eq!(pool.stats().lent, 0, "round {round}");
        }
        // Kept buffers hold the pool: the fifth waits, within its time, then fails.
        for k in 1..=4 {
            assert_eq!(c.keep(fill(&pool, 1, 10)).await.unwrap(), k);
        }
        assert!(matches!(
            pool.buffer_within(Duration::from_millis(20)),
            Err(PoolError::Exhausted(_))
        ));
        assert_eq!(c.release_kept().await.unwrap(), 4);
        assert_eq!(pool.stats().free, 4);
        // Buffers of the server's pool, as stream items: the client's drops free them, so
        // 20 items go through its 3 slots.
        let mut items = c.frames(20, 50_000).await.unwrap();
        let mut i = 0u8;
        while let Some(item) = items.next().await {
            let view = theirs.open(item.unwrap()).unwrap();
            assert!(view.to_vec().iter().all(|&b| b == i) && view.len() == 50_000);
            i += 1;
        }
        assert_eq!(i, 20);
        assert_eq!(pool.stats().faults, 0);
        drop((c, theirs));
        server.await.unwrap();
    });
}

#[test]
fn the_blocking_client_lends_buffers_too() {
    run_async(async {
        let (a, server) = serve_for_blocking(FramesServer::new(FramesImpl::default()));
        tokio::task::spawn_blocking(move || {
            let c = FramesBlockingClient::from_std(a).with_timeout(Duration::from_secs(20));
            let pool = Pool::new("frames-client", 1 << 20, 2).unwrap();
            let theirs = c.attach(pool.share().unwrap()).unwrap().map().unwrap();
            for round in 0..20u8 {
                let got = c.checksum(fill(&pool, round, 1 << 20)).unwrap();
                assert_eq!(got, i64::from(round) << 20);
                assert_eq!(pool.stats().lent, 0);
            }
            let items: Vec<PoolView> = c
                .frames(3, 1000)
                .unwrap()
                .map(|item| theirs.open(item.unwrap()).unwrap())
                .collect();
            for (i, view) in items.iter().enumerate() {
                assert!(view.to_vec() == vec![i as u8; 1000]);
            }
        })
        .await
        .unwrap();
        server.await.unwrap();
    });
}

/// A buffer that names another pool, or lies about where it is, is refused by the server's
/// reader and the connection goes on; nothing is released for it.
#[test]
fn a_buffer_of_another_pool_is_refused_and_nothing_else_happens() {
    run_async(async {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let server = serve_connection(b, FramesServer::new(FramesImpl::default()));
        let c = FramesClient::new(fdrpc::Client::from_std(a).unwrap());
        let pool = Pool::new("frames-client", 4096, 2).unwrap();
        let _theirs = c.attach(pool.share().unwrap()).await.unwrap();
        let stranger = Pool::new("stranger", 4096, 2).unwrap();
        assert_eq!(c.checksum(fill(&stranger, 1, 10)).await.unwrap(), -1);
        assert_eq!(
            stranger.stats().lent,
            1,
            "nobody released the stranger's buffer"
        );
        assert_eq!(c.checksum(fill(&pool, 2, 10)).await.unwrap(), 20);
        drop(c);
        server.await.unwrap();
    });
}
