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
