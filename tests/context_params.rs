//! What the crate docs promise of `cx: &fdrpc::Context` and of oneway order: the context may
//! stand anywhere in any kind of method (a oneway, a stream method, last), and a oneway
//! followed by a call on the same connection is handled in that order (store, then fetch).

mod common;

use std::sync::Mutex;

use common::*;
use futures::StreamExt;

#[fdrpc::service]
trait Notes {
    #[oneway]
    async fn note(&self, cx: &fdrpc::Context, n: i32);
    async fn notes(&self) -> Vec<i32>;
    async fn numbers(&self, n: u32, cx: &fdrpc::Context) -> fdrpc::Stream<u32>;
    /// The call's seqid and the milliseconds left before its deadline, as the handler sees
    /// them.
    async fn seen(&self, cx: &fdrpc::Context) -> Seen;
}

#[derive(fdrpc::Message, Debug)]
struct Seen {
    seqid: i32,
    left_ms: Option<i64>,
}

#[derive(Default)]
struct NotesImpl {
    /// Each note, with the uid of whoever sent it.
    kept: Mutex<Vec<(i32, u32)>>,
}

impl Notes for NotesImpl {
    async fn note(&self, cx: &fdrpc::Context, n: i32) {
        self.kept.lock().unwrap().push((n, cx.peer().uid()));
    }
    async fn notes(&self) -> Vec<i32> {
        let me = rustix::process::getuid().as_raw();
        let kept = self.kept.lock().unwrap();
        assert!(kept.iter().all(|(_, uid)| *uid == me), "{kept:?}");
        kept.iter().map(|(n, _)| *n).collect()
    }
    async fn numbers(&self, n: u32, cx: &fdrpc::Context) -> fdrpc::Stream<u32> {
        let uid = cx.peer().uid();
        fdrpc::Stream::iter((0..n).map(move |i| i + uid))
    }
    async fn seen(&self, cx: &fdrpc::Context) -> Seen {
        let left_ms = cx.deadline().map(|d| {
            d.saturating_duration_since(std::time::Instant::now())
                .as_millis() as i64
        });
        Seen {
            seqid: cx.seqid(),
            left_ms,
        }
    }
}

/// The context carries the call's own seqid (the client counts up) and the deadline the
/// client's timeout set (none without one).
#[test]
fn the_context_has_the_calls_seqid_and_deadline() {
    run_async(async {
        let (a, server) = serve_for_blocking(NotesServer::new(NotesImpl::default()));
        let client = NotesClient::new(fdrpc::Client::from_std(a).unwrap());
        let first = client
            .with_timeout(std::time::Duration::from_secs(60))
            .seen()
            .await
            .unwrap();
        assert!(first.seqid >= 1, "{first:?}");
        let left = first.left_ms.expect("a call with a timeout has a deadline");
        assert!(left > 0 && left <= 60_000, "{left} ms left");
        let second = client.without_timeout().seen().await.unwrap();
        assert_eq!(second.seqid, first.seqid + 1);
        assert_eq!(second.left_ms, None);
        drop(client);
        server.await.unwrap();
    });
}

#[test]
fn the_context_in_a_oneway_and_a_stream_method_and_a_oneway_before_a_call_in_order() {
    run_async(async {
        let (a, server) = serve_for_blocking(NotesServer::new(NotesImpl::default()));
        let client = NotesClient::new(fdrpc::Client::from_std(a).unwrap());
        // 200 times: a oneway stores, the call right after it fetches, and sees it.
        for n in 0..200 {
            client.note(n).await.unwrap();
            let notes = client.notes().await.unwrap();
            assert_eq!(
                notes.last(),
                Some(&n),
                "the call overtook the oneway before it"
            );
            assert_eq!(notes.len(), n as usize + 1);
        }
        let uid = rustix::process::getuid().as_raw();
        let items: Vec<u32> = client
            .numbers(3)
            .await
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(items, [uid, uid + 1, uid + 2]);
        drop(client);
        server.await.unwrap();
    });
}
