//! Large `binary` values without extra copies: `Bytes` arguments, results, fields and stream
//! items of every size around the thresholds (16 KiB: spliced into the `sendmsg` rather than
//! copied; 64 KiB: a frame read into memory of its own, which received values are views of),
//! with fds beside them, through both clients; `Vec<u8>` alike.

mod common;

use std::os::fd::OwnedFd;
use std::time::Duration;

use common::*;
use fdrpc::bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;

/// Sizes on both sides of each threshold, and large ones.
const SIZES: [usize; 9] = [
    0,
    1,
    16_383,
    16_384,
    65_535,
    65_536,
    200_000,
    1 << 20,
    3 << 20,
];

#[derive(fdrpc::Message, Debug)]
pub struct Parcel {
    pub head: Bytes,
    pub fd: OwnedFd,
    pub tail: Bytes,
    pub plain: Vec<u8>,
}

#[fdrpc::service]
pub trait Bulk {
    /// The parcel back, with every byte of each part incremented (so the reply is written
    /// anew), and the fd it came with.
    async fn bump(&self, parcel: Parcel) -> Parcel;
    /// `n` items of `size` bytes, item `i` filled with `i`.
    async fn chunks(&self, n: i64, size: i64) -> fdrpc::Stream<Bytes>;
    /// Checks that item `i` is all `i`; returns the bytes seen, or -1 - the first bad index.
    async fn absorb(&self, items: fdrpc::Stream<Bytes>) -> i64;
}

pub struct BulkImpl;

fn bumped(b: &[u8]) -> Vec<u8> {
    b.iter().map(|x| x.wrapping_add(1)).collect()
}

impl Bulk for BulkImpl {
    async fn bump(&self, p: Parcel) -> Parcel {
        Parcel {
            head: bumped(&p.head).into(),
            fd: p.fd,
            tail: bumped(&p.tail).into(),
            plain: bumped(&p.plain),
        }
    }
    async fn chunks(&self, n: i64, size: i64) -> fdrpc::Stream<Bytes> {
        fdrpc::Stream::iter((0..n).map(move |i| Bytes::from(vec![i as u8; size as usize])))
    }
    async fn absorb(&self, mut items: fdrpc::Stream<Bytes>) -> i64 {
        let (mut i, mut seen) = (0u8, 0i64);
        while let Some(item) = items.next().await {
            let Ok(item) = item;
            if item.iter().any(|&b| b != i) {
                return -1 - i64::from(i);
            }
            seen += item.len() as i64;
            i = i.wrapping_add(1);
        }
        seen
    }
}

/// A pattern that differs at every offset near the thresholds and across pages.
fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8) ^ ((i >> 8) as u8) ^ ((i >> 16) as u8) ^ salt)
        .collect()
}

fn parcel(size: usize) -> (Parcel, (u64, u64)) {
    let fd = OwnedFd::from(memfd(format!("size {size}").as_bytes()));
    let id = ino(&fd);
    let parcel = Parcel {
        head: pattern(size, 1).into(),
        fd,
        tail: pattern(size / 2, 2).into(),
        plain: pattern(size / 3, 3),
    };
    (parcel, id)
}

fn check(back: &Parcel, size: usize, id: (u64, u64)) {
    assert!(
        back.head[..] == bumped(&pattern(size, 1))[..],
        "head of {size}"
    );
    assert!(
        back.tail[..] == bumped(&pattern(size / 2, 2))[..],
        "tail of {size}"
    );
    assert!(
        back.plain == bumped(&pattern(size / 3, 3)),
        "plain of {size}"
    );
    assert_eq!(ino(&back.fd), id, "the fd that went with {size} bytes");
    assert_eq!(contents(&back.fd), format!("size {size}").as_bytes());
    assert!(is_cloexec(&back.fd));
}

fn client() -> (BulkClient, tokio::task::JoinHandle<()>) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let server = serve_connection(b, BulkServer::new(BulkImpl));
    (BulkClient::new(fdrpc::Client::from_std(a).unwrap()), server)
}

#[test]
fn large_binaries_and_their_fds_round_trip_at_every_size() {
    run_async(async {
        let (c, server) = client();
        for size in SIZES {
            let (p, id) = parcel(size);
            check(&c.bump(p).await.unwrap(), size, id);
        }
        // Many in flight at once: spliced buffers of different calls interleave in one queue.
        let calls = SIZES.map(|size| {
            let c = c.clone();
            tokio::spawn(async move {
                let (p, id) = parcel(size);
                check(&c.bump(p).await.unwrap(), size, id);
            })
        });
        for call in calls {
            call.await.unwrap();
        }
        drop(c);
        server.await.unwrap();
    });
}

#[test]
fn the_blocking_client_sends_and_receives_large_binaries() {
    run_async(async {
        let (a, server) = serve_for_blocking(BulkServer::new(BulkImpl));
        tokio::task::spawn_blocking(move || {
            let c = BulkBlockingClient::from_std(a).with_timeout(Duration::from_secs(20));
            for size in SIZES {
                let (p, id) = parcel(size);
                check(&c.bump(p).unwrap(), size, id);
            }
            let items: Vec<Bytes> = c.chunks(5, 100_000).unwrap().map(Result::unwrap).collect();
            assert_eq!(items.len(), 5);
            for (i, item) in items.iter().enumerate() {
                assert!(item.len() == 100_000 && item.iter().all(|&b| b == i as u8));
            }
            let sent = (0..6u8).map(|i| Bytes::from(vec![i; 70_000]));
            assert_eq!(c.absorb(sent).unwrap(), 6 * 70_000);
        })
        .await
        .unwrap();
        server.await.unwrap();
    });
}

#[test]
fn streams_of_large_items_both_ways() {
    run_async(async {
        let (c, server) = client();
        let items: Vec<Bytes> = c
            .chunks(20, 300_000)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(items.len(), 20);
        for (i, item) in items.iter().enumerate() {
            assert!(
                item.len() == 300_000 && item.iter().all(|&b| b == i as u8),
                "{i}"
            );
        }
        let sizes = [0, 16_384, 65_536, 1 << 20, 5, 100_000];
        let sent = fdrpc::Stream::iter(
            sizes
                .into_iter()
                .enumerate()
                .map(|(i, n)| Bytes::from(vec![i as u8; n])),
        );
        assert_eq!(
            c.absorb(sent).await.unwrap(),
            sizes.iter().sum::<usize>() as i64
        );
        drop((c, items));
        server.await.unwrap();
    });
}

/// What makes a received large value free: it is a view of the frame it came in, not a
/// copy. Two values of one reply lie in the same memory, one after the other.
#[test]
fn received_large_values_are_views_of_their_frame() {
    run_async(async {
        let (c, server) = client();
        let (p, id) = parcel(1 << 20);
        let back = c.bump(p).await.unwrap();
        check(&back, 1 << 20, id);
        let (head, tail) = (back.head.as_ptr() as usize, back.tail.as_ptr() as usize);
        let gap = tail.wrapping_sub(head + back.head.len());
        assert!(
            gap < 16,
            "head and tail are {gap} bytes apart: not one frame's memory"
        );
        drop(back);
        drop(c);
        server.await.unwrap();
    });
}

/// The caller's buffer comes back once the message is written: the next call's argument is
/// written into the same memory, not into fresh pages.
#[test]
fn a_callers_buffer_is_reused_across_calls() {
    run_async(async {
        let (c, server) = client();
        let mut buf = BytesMut::with_capacity(1 << 20);
        let first = buf.as_ptr();
        for round in 0..5u8 {
            buf.reserve(1 << 20);
            assert_eq!(
                buf.as_ptr(),
                first,
                "round {round}: the memory was not given back"
            );
            buf.put_bytes(round, 1 << 20);
            let head = buf.split().freeze();
            let fd = OwnedFd::from(memfd(b"x"));
            let p = Parcel {
                head,
                fd,
                tail: Bytes::new(),
                plain: Vec::new(),
            };
            let back = c.bump(p).await.unwrap();
            assert!(back.head.iter().all(|&b| b == round.wrapping_add(1)));
        }
        drop(c);
        server.await.unwrap();
    });
}
