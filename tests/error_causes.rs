//! Errors that keep their cause: a stream item or sink item that cannot be encoded reaches the
//! other side with the reason (as a plain call's reply that cannot be encoded does), a sink
//! handler can tell a finished sink from a broken one, and `CallError` shows a service error
//! through its `Display`.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use futures::StreamExt;

mod numbers {
    use std::sync::{Arc, Mutex};

    #[derive(fdrpc::Message, Debug)]
    pub struct Refusal {
        pub code: i32,
    }

    impl std::fmt::Display for Refusal {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "refused with code {}", self.code)
        }
    }

    #[derive(fdrpc::Message, Debug)]
    pub struct Opaque {
        pub code: i32,
    }

    #[fdrpc::service]
    pub trait Numbers {
        /// `values`, as a plain reply.
        async fn one(&self, value: i64) -> u64;
        /// 1, then `u64::MAX`, which cannot be encoded.
        async fn many(&self) -> fdrpc::Stream<u64>;
        /// Sums a sink; records what it saw of the sink's end.
        async fn sum(&self, values: fdrpc::Stream<u64>) -> u64;
        /// Fails with an error that has a `Display`.
        async fn refuse(&self) -> Result<(), Refusal>;
        /// Fails with an error that has none.
        async fn opaque(&self) -> Result<(), Opaque>;
    }

    /// What each `sum` saw: the sum, and why the sink broke off if it did.
    pub type Seen = Arc<Mutex<Vec<(u64, Option<String>)>>>;

    #[derive(Default)]
    pub struct NumbersImpl {
        pub seen: Seen,
    }

    impl Numbers for NumbersImpl {
        async fn one(&self, value: i64) -> u64 {
            if value < 0 { u64::MAX } else { value as u64 }
        }
        async fn many(&self) -> fdrpc::Stream<u64> {
            fdrpc::Stream::iter(vec![1, u64::MAX, 3])
        }
        async fn sum(&self, mut values: fdrpc::Stream<u64>) -> u64 {
            use futures::StreamExt;
            let mut sum = 0;
            while let Some(Ok(v)) = values.next().await {
                sum += v;
            }
            let broken = values.broken().map(|e| e.to_string());
            self.seen.lock().unwrap().push((sum, broken));
            sum
        }
        async fn refuse(&self) -> Result<(), Refusal> {
            Err(Refusal { code: 7 })
        }
        async fn opaque(&self) -> Result<(), Opaque> {
            Err(Opaque { code: 8 })
        }
    }
}

use numbers::*;

fn serve(seen: Seen) -> (NumbersClient, tokio::task::JoinHandle<()>) {
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let _ = fdrpc::Server::new()
            .serve_connection(b, NumbersServer::new(NumbersImpl { seen }))
            .await;
    });
    (NumbersClient::new(fdrpc::Client::new(a).unwrap()), server)
}

/// The reason after the framing text: "could not encode <what>: <reason>".
fn reason(message: &str) -> &str {
    message.split_once(": ").map_or(message, |(_, r)| r)
}

#[test]
fn an_unencodable_stream_item_reaches_the_consumer_with_the_cause_a_plain_call_gets() {
    run_async(async {
        let (client, server) = serve(Arc::default());
        let plain = match client.one(-1).await {
            Err(fdrpc::RpcError::Application(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(plain.kind, fdrpc::ApplicationErrorKind::InternalError);
        assert!(
            plain.message.starts_with("could not encode the reply: "),
            "{plain}"
        );

        let mut items = client.many().await.unwrap();
        assert_eq!(items.next().await.unwrap().unwrap(), 1);
        let e = match items.next().await {
            Some(Err(fdrpc::CallError::Rpc(fdrpc::RpcError::Application(e)))) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(e.kind, fdrpc::ApplicationErrorKind::InternalError);
        assert!(
            e.message.starts_with("could not encode a stream item: "),
            "{e}"
        );
        assert_eq!(reason(&e.message), reason(&plain.message));
        assert!(reason(&e.message).contains(&u64::MAX.to_string()), "{e}");
        assert!(items.next().await.is_none(), "the stream is over");
        drop((client, items));
        server.await.unwrap();
    });
}

#[test]
fn a_sink_handler_tells_a_finished_sink_from_a_broken_one_and_the_client_learns_why() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    run_async({
        let seen = seen.clone();
        async move {
            let (client, server) = serve(seen);
            let total = client
                .sum(fdrpc::Stream::iter(vec![1, 2, 3]))
                .await
                .unwrap();
            assert_eq!(total, 6);
            match client.sum(fdrpc::Stream::iter(vec![4, u64::MAX])).await {
                Err(fdrpc::RpcError::Application(e)) => {
                    assert_eq!(e.kind, fdrpc::ApplicationErrorKind::ProtocolError);
                    assert!(
                        e.message.starts_with(
                            "the sink broke off before its end: could not encode a stream item: "
                        ),
                        "{e}"
                    );
                }
                other => panic!("{other:?}"),
            }
            drop(client);
            server.await.unwrap();
        }
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], (6, None), "a finished sink is not broken");
    assert_eq!(seen[1].0, 4);
    let why = seen[1]
        .1
        .as_deref()
        .expect("the handler sees the sink broke off");
    assert!(why.contains("could not encode a stream item"), "{why}");
}

#[test]
fn a_blocking_clients_unencodable_sink_item_is_named_too() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    run_async({
        let seen = seen.clone();
        async move {
            let (stream, server) = serve_for_blocking(NumbersServer::new(NumbersImpl { seen }));
            tokio::task::spawn_blocking(move || {
                let client = NumbersBlockingClient::from_std(stream);
                match client.sum(vec![5, u64::MAX]) {
                    Err(fdrpc::RpcError::Application(e)) => {
                        assert!(e.message.contains("could not encode a stream item"), "{e}");
                    }
                    other => panic!("{other:?}"),
                }
            })
            .await
            .unwrap();
            server.await.unwrap();
        }
    });
    assert!(seen.lock().unwrap()[0].1.is_some());
}

#[test]
fn call_error_shows_a_service_error_through_its_display_when_it_has_one() {
    run_async(async {
        let (client, server) = serve(Arc::default());
        let shown = client.refuse().await.unwrap_err();
        assert_eq!(shown.to_string(), "refused with code 7");
        let opaque = client.opaque().await.unwrap_err();
        assert_eq!(
            opaque.to_string(),
            "the service returned an error: Opaque { code: 8 }"
        );
        drop(client);
        server.await.unwrap();
    });
}
