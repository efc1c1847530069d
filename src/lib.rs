//! RPC between processes on one host where file descriptors are first-class: a field of a
//! message, an argument, a result, an error, a stream item may be an open file, a socket, a
//! pipe or a sealed memfd, and it arrives as an owned descriptor on the other side. On the
//! wire it is Apache Thrift (THeader framing, compact protocol) over a Unix socket, with the
//! fds passed beside it (`SCM_RIGHTS`), so programs in other languages can call an fdrpc
//! service with their stock Thrift library.
//!
//! **Linux only** (it needs `SCM_RIGHTS` with `MSG_CMSG_CLOEXEC`, memfd seals and
//! `SO_PEERCRED`).
//!
//! # Getting started
//!
//! ```toml
//! [dependencies]
//! fdrpc = "0.1"
//! tokio = { version = "1", features = ["rt-multi-thread", "macros", "net", "time"] }
//! futures = "0.3"  # StreamExt, for streams
//! ```
//!
//! A service is a trait; messages derive [`Message`]; fds are plain owned types (`OwnedFd`,
//! `File`, `UnixStream`, ...). [`service`] generates an async client, a blocking client and a
//! server (the [`example`] module shows each item it generates, with its signature):
//!
//! ```
//! use std::io::{Read, Seek, Write};
//! use std::os::fd::OwnedFd;
//!
//! use futures::StreamExt;
//!
//! /// Why the broker refused; the log of its decision travels as a file.
//! #[derive(fdrpc::Message, Debug)]
//! pub struct Denied {
//!     pub reason: String,
//!     pub log: Option<OwnedFd>,
//! }
//!
//! #[fdrpc::service]
//! pub trait Broker {
//!     /// Opens `path` for reading, if the caller may.
//!     async fn open(&self, path: String) -> Result<std::fs::File, Denied>;
//!     /// `count` scratch files (a server stream: one item at a time, each with its fd).
//!     async fn scratch(&self, count: u32) -> fdrpc::Stream<std::fs::File>;
//!     /// The total size of the files sent (a sink: the client streams to the server).
//!     async fn total(&self, files: fdrpc::Stream<std::fs::File>) -> u64;
//!     /// Who is calling (`cx` is not on the wire).
//!     async fn whoami(&self, cx: &fdrpc::Context) -> u32;
//! }
//!
//! struct MyBroker;
//!
//! impl Broker for MyBroker {
//!     async fn open(&self, path: String) -> Result<std::fs::File, Denied> {
//!         if path.starts_with("/secret") {
//!             return Err(Denied { reason: format!("{path} is off limits"), log: None });
//!         }
//!         std::fs::File::open(&path).map_err(|e| Denied { reason: e.to_string(), log: None })
//!     }
//!     async fn scratch(&self, count: u32) -> fdrpc::Stream<std::fs::File> {
//!         fdrpc::Stream::iter((0..count).filter_map(|_| tempfile().ok()))
//!     }
//!     async fn total(&self, mut files: fdrpc::Stream<std::fs::File>) -> u64 {
//!         let mut total = 0;
//!         while let Some(Ok(file)) = files.next().await {
//!             total += file.metadata().map(|m| m.len()).unwrap_or(0);
//!         }
//!         total
//!     }
//!     async fn whoami(&self, cx: &fdrpc::Context) -> u32 {
//!         cx.peer().uid()
//!     }
//! }
//!
//! # fn tempfile() -> std::io::Result<std::fs::File> {
//! #     let path = std::env::temp_dir().join(format!("fdrpc-doc-{}-{:?}", std::process::id(), std::thread::current().id()));
//! #     let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
//! #     std::fs::remove_file(&path)?;
//! #     Ok(file)
//! # }
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let dir = std::env::temp_dir().join(format!("fdrpc-doc-{}", std::process::id()));
//!     std::fs::create_dir_all(&dir)?;
//!     let socket = dir.join("broker.sock");
//!
//!     // The server: a listener, and the generated server around the implementation.
//!     let listener = fdrpc::Listener::bind(&socket)?;
//!     let server = tokio::spawn(fdrpc::Server::new().serve(listener, BrokerServer::new(MyBroker)));
//!
//!     // The async client.
//!     let client = BrokerClient::connect(&socket).await?;
//!     let mut notes = tempfile()?;
//!     notes.write_all(b"hello")?;
//!     let path = dir.join("notes.txt");
//!     std::fs::write(&path, "read through an fd")?;
//!     let mut file = client.open(path.display().to_string()).await?;
//!     let mut text = String::new();
//!     file.read_to_string(&mut text)?;
//!     assert_eq!(text, "read through an fd");
//!
//!     // A declared error is `CallError::Service`; anything else is `CallError::Rpc`.
//!     match client.open("/secret/key".into()).await {
//!         Err(fdrpc::CallError::Service(denied)) => assert!(denied.reason.contains("off limits")),
//!         other => panic!("{other:?}"),
//!     }
//!
//!     // A server stream is a `futures::Stream`; a sink takes one.
//!     let mut files = client.scratch(3).await?;
//!     let mut received = Vec::new();
//!     while let Some(file) = files.next().await {
//!         received.push(file?);
//!     }
//!     assert_eq!(received.len(), 3);
//!     notes.rewind()?;
//!     assert_eq!(client.total(fdrpc::Stream::iter(vec![notes])).await?, 5);
//!
//!     // The blocking client, for plain threads: the same methods, no runtime.
//!     let blocking = BrokerBlockingClient::connect(&socket)?;
//!     let uid = tokio::task::spawn_blocking(move || blocking.whoami()).await??;
//!     assert_eq!(uid, client.whoami().await?);
//!
//!     server.abort();
//!     std::fs::remove_dir_all(&dir)?;
//!     Ok(())
//! }
//! ```
//!
//! # What to know
//!
//! - **Fds are owned.** A received fd is an `OwnedFd` (or `File`, ...) from the moment it
//!   arrives, close-on-exec; every fd no field claims is closed. Sending moves the fd: it is
//!   closed here once written. `RawFd`, `BorrowedFd` and `&OwnedFd` fields are compile
//!   errors. Checked fd types ([`RegularFile`], [`Directory`], [`Fifo`], [`StreamSocket`],
//!   [`SealedMemfd`]) say what the fd must be, and a fd that is not is refused on arrival.
//! - **Errors.** A method without a declared error returns `Result<T, RpcError>`; one declared
//!   `-> Result<T, E>` returns `Result<T, CallError<E>>`: [`CallError::Service`] is `E`
//!   (which may carry fds), [`CallError::Rpc`] an [`RpcError`] (the connection, a timeout, a
//!   `TApplicationException` from the server, a value that does not encode or decode).
//! - **Timeouts and cancellation.** Calls time out after 25 s ([`Settings::call_timeout`];
//!   per handle `with_timeout` and `without_timeout`), and the server learns the deadline
//!   ([`Context::deadline`]) and drops a handler that outlives it. Dropping a call's future
//!   cancels the call: the server drops the handler at once. Dropping a [`Streaming`] cancels
//!   the stream; the producer on the server is told by being dropped (its `Drop` runs).
//! - **Oneway.** A `#[oneway]` method's `.await` returns once the call is queued, not when it
//!   is delivered; `client().flush().await` waits until it is written. Oneway calls of one
//!   connection run in order on the server, and each runs to its end before the server reads
//!   the connection's next frame (on both servers): a oneway followed by a call on the same
//!   connection (one client and its clones) is handled in that order, so store-then-fetch
//!   holds. Calls on different connections have no order.
//! - **The context.** `cx: &fdrpc::Context` may stand anywhere in a method's parameters, at
//!   most once and by shared reference, in every kind of method (oneway and stream methods
//!   too). It is not on the wire: clients do not pass it, the IDL does not show it.
//! - **An fd is an open file, not a copy of one.** An fd that arrives is another descriptor
//!   of the same open file description as the sender's (as `dup` makes): it shares the file
//!   offset and status flags with every other descriptor of it, the sender's and one sent
//!   twice or returned included. Reading through one moves the offset of all; use
//!   `pread`/`pwrite` (`FileExt::read_at`) or open the file again for an offset of its own.
//! - **Streams and sinks** carry fds in every item, with credit-based flow control: a slow
//!   consumer bounds what the producer holds (64 items by default,
//!   [`Settings::stream_window`]; a stream opened by a peer that grants none gets the
//!   protocol's 16).
//! - **Large data.** A [`bytes::Bytes`] argument, result, field or stream item travels as
//!   Thrift `binary` without being copied on the way: a large one (16 KiB or more) goes to
//!   the socket from the caller's memory, and one received is a view of the frame it came in
//!   (a frame of 64 KiB or more is read into memory of its own, reused for the next once its
//!   last view is dropped). Reuse a buffer across calls as tokio's codecs do: fill a
//!   `BytesMut`, send `split().freeze()`, and the next `reserve` takes the memory back once
//!   the message is written. `Vec<u8>` is not copied on the way out either, but is copied
//!   once out of the received frame. For data that should not cross the socket at all, send
//!   a [`SealedMemfd`], or share a [`Pool`] once and lend its buffers ([`PoolBuffer`]) in
//!   any later message: they come back when the receiver drops them (safety model in the
//!   [`Pool`] docs and `docs/SECURITY.md`).
//! - **Handlers run concurrently** (many calls in flight per connection), on the runtime's
//!   threads: the futures of the trait's methods are `Send`.
//! - **Limits** on frame size, fds, calls in flight, backlog, connections and a server-wide fd
//!   budget are one [`Settings`], each with a safe default; hostile input gets a typed error,
//!   never a panic or a leaked fd.
//!
//! # Services as fields
//!
//! A connected socket can carry a whole service. Every `#[fdrpc::service] trait Session`
//! generates `SessionProtocol`, and [`ClientEnd<SessionProtocol>`](ClientEnd) and
//! [`ServerEnd<SessionProtocol>`](ServerEnd) are wire types like any fd: an argument, a
//! result, an error, a field, in a `Vec` or `Option`, a stream item. A client end becomes the
//! generated client ([`ClientEnd::into_client`], [`ClientEnd::into_blocking_client`]); a server
//! end is served with an implementation of the trait ([`ServerEnd::serve`],
//! [`ServerEnd::serve_blocking`], or [`Context::serve`]: on the server that runs the handler).
//! [`endpoints`] makes a connected pair. It is how privilege separation is built (a broker
//! checks its caller once, then hands out a session that can do only what that caller may),
//! how callbacks are built (a client passes a client end of a service it serves itself), and
//! how a service hands out per-object interfaces.
//!
//! ```
//! use fdrpc::{ClientEnd, Context};
//!
//! #[derive(fdrpc::Message, Debug)]
//! pub struct Denied { pub reason: String }
//!
//! /// What one user may do.
//! #[fdrpc::service]
//! pub trait Session {
//!     async fn user(&self) -> String;
//! }
//!
//! #[fdrpc::service]
//! pub trait Broker {
//!     async fn open_session(&self, cx: &Context, user: String)
//!         -> Result<ClientEnd<SessionProtocol>, Denied>;
//! }
//!
//! struct UserSession(String);
//! impl Session for UserSession {
//!     async fn user(&self) -> String { self.0.clone() }
//! }
//!
//! struct Gate;
//! impl Broker for Gate {
//!     async fn open_session(&self, cx: &Context, user: String)
//!         -> Result<ClientEnd<SessionProtocol>, Denied>
//!     {
//!         // The one check, at the door: the session's rights follow from it.
//!         if user == "root" && cx.peer().uid() != 0 {
//!             return Err(Denied { reason: "only root opens root's session".into() });
//!         }
//!         let (client, server) = fdrpc::endpoints::<SessionProtocol>()
//!             .map_err(|e| Denied { reason: e.to_string() })?;
//!         // One more connection of this server: its limits, its shutdown.
//!         cx.serve(server, UserSession(user)).map_err(|e| Denied { reason: e.to_string() })?;
//!         Ok(client)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("fdrpc-doc-endpoints-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("broker.sock");
//! let listener = fdrpc::Listener::bind(&path)?;
//! tokio::spawn(fdrpc::Server::new().serve(listener, BrokerServer::new(Gate)));
//! let broker = BrokerClient::connect(&path).await?;
//! let session = broker.open_session("alice".into()).await?.into_client()?;
//! assert_eq!(session.user().await?, "alice");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! - **Lifetimes follow the connection.** A served end stops being served when its peer
//!   closes it, when its server shuts down (gracefully: calls in flight finish) or is
//!   dropped, and its implementation is dropped then. The client sees
//!   [`RpcError::Connection`], and can wait for it: `closed()` on the generated clients (a
//!   death notification, as Binder's `linkToDeath`). An end served with [`Context::serve`]
//!   counts as a connection of its server ([`Settings::max_connections`]; a full server
//!   refuses it with [`ServeEndpointError`]) and shares its fd budget and hooks; the
//!   server's authorization hook is not asked.
//! - **Who is calling.** `SO_PEERCRED` is taken when a socket is made: on a pair it names
//!   the process that made the pair (the broker), wherever the ends go. So the server end
//!   [`endpoints`] makes has `SO_PASSCRED` set, and [`Context::peer`] of a call on a served
//!   endpoint is what the kernel attached to that call: the process that sent it, whoever
//!   holds the client end now (pid 0 if the kernel could not name it, e.g. from another pid
//!   namespace; no pidfd).
//! - **On arrival** an end must be a connected Unix stream socket: a file, a listening or
//!   unconnected socket is a typed decode error. Nothing on the wire says which service the
//!   other end speaks: the type is the two programs' agreement, as every field type is.
//! - **Misuse is a compile error**: `ClientEnd<String>` ("`String` is not an fdrpc service
//!   protocol"), a client end where a server end is expected, an implementation of another
//!   trait.
//! - The IDL names each end's service: `typedef i32 SessionClientEnd (fdrpc.fd =
//!   "unix_stream_socket", fdrpc.endpoint = "client:Session")`, and describes `Session` too.
//!
//! A callback is the same thing the other way round: the client serves a service of its own
//! and passes its client end; the server calls it while the client's call is still running.
//!
//! ```
//! use fdrpc::ClientEnd;
//!
//! #[fdrpc::service]
//! pub trait Progress {
//!     async fn done(&self, percent: u32);
//! }
//!
//! #[fdrpc::service]
//! pub trait Copier {
//!     async fn copy(&self, progress: ClientEnd<ProgressProtocol>) -> u64;
//! }
//!
//! struct Copy;
//! impl Copier for Copy {
//!     async fn copy(&self, progress: ClientEnd<ProgressProtocol>) -> u64 {
//!         let progress = progress.into_client().expect("in a tokio runtime");
//!         for percent in [50, 100] {
//!             let _ = progress.done(percent).await; // the caller may have gone
//!         }
//!         4096
//!     }
//! }
//!
//! struct Print;
//! impl Progress for Print {
//!     async fn done(&self, percent: u32) {
//!         println!("{percent}%");
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (copier_end, server_end) = fdrpc::endpoints::<CopierProtocol>()?;
//! # tokio::spawn(server_end.serve(Copy));
//! # let copier = copier_end.into_client()?;
//! let (progress, end) = fdrpc::endpoints::<ProgressProtocol>()?;
//! tokio::spawn(end.serve(Print)); // ends when the copier drops its client end
//! assert_eq!(copier.copy(progress).await?, 4096);
//! # Ok(())
//! # }
//! ```
//!
//! # Attributes
//!
//! Every attribute the two macros take, in one place (the details are on [`Message`] and
//! [`service`]). Thrift ids and names are what travel: renaming on the Rust side is free,
//! renumbering breaks peers.
//!
//! | attribute | on | what it does |
//! |---|---|---|
//! | `#[fdrpc::service(rename = "Name")]` | a service trait | the Thrift service name (default: the trait's name) |
//! | `#[fdrpc::service(crate = path)]`, `#[fdrpc(crate = path)]` | a service trait, a message type | where the `fdrpc` crate is, for a crate that renames it |
//! | `#[oneway]` or `#[fdrpc(oneway)]` | a method | no reply; the call's `.await` returns once it is queued; oneways of a connection run in order |
//! | `#[fdrpc(rename = "wire")]` or `#[fdrpc(name = "wire")]` | a method | its Thrift name: the way out of a Thrift reserved word (`list`, `map`, `set`, ...) |
//! | `#[fdrpc(id = N)]` | a parameter, a field, a union variant | its Thrift field id, 1 to 32767 (default: the position, from 1; `cx` does not count) |
//! | `#[fdrpc(rename = "wire")]` | a parameter, a field, a variant, a message type | its Thrift name |
//! | `#[fdrpc(binary)]` | a `Vec<u8>` or `Option<Vec<u8>>` parameter or field | Thrift `binary` (what a `Vec<u8>` is anyway; accepted for older code) |
//! | `#[fdrpc(fd)]` | a parameter or field | asserts that it holds descriptors: a compile error if its type cannot |
//!
//! ```
//! use std::os::fd::OwnedFd;
//!
//! #[derive(fdrpc::Message, Debug)]
//! #[fdrpc(rename = "Entry")] // the Thrift struct is `Entry`
//! pub struct ListEntry {
//!     pub name: String,
//!     #[fdrpc(id = 7, rename = "handle")] // field 7, named `handle` in the IDL
//!     #[fdrpc(fd)] // must hold an fd: a type that cannot is a compile error
//!     pub file: OwnedFd,
//!     #[fdrpc(binary)]
//!     pub digest: Vec<u8>,
//! }
//!
//! #[fdrpc::service(rename = "Catalog")]
//! pub trait Catalogue {
//!     /// `list` is a Thrift reserved word: the method travels as `entries`.
//!     #[fdrpc(rename = "entries")]
//!     async fn list(&self, #[fdrpc(id = 3)] prefix: String) -> Vec<ListEntry>;
//!     /// No reply.
//!     #[oneway]
//!     async fn forget(&self, #[fdrpc(rename = "entry_name")] name: String);
//! }
//!
//! // Which method a call is, for hooks and handlers: the enum follows the rename.
//! assert_eq!(CatalogueMethod::List.name(), "entries");
//!
//! let idl = CatalogueClient::idl();
//! assert!(idl.contains("service Catalog {"));
//! assert!(idl.contains("list<Entry> entries(3: string prefix)"));
//! assert!(idl.contains("oneway void forget(1: string entry_name)"));
//! assert!(idl.contains("7: required fd handle,"));
//! ```
//!
//! # Tracing
//!
//! fdrpc emits [`tracing`](https://docs.rs/tracing) spans and events; with no subscriber
//! they cost one check each. Their targets are module paths under `fdrpc_runtime` (filter
//! with `fdrpc_runtime=info`).
//!
//! | span | level | where | fields |
//! |---|---|---|---|
//! | `connection` | INFO | server, one per connection | `peer_pid`, `peer_uid` |
//! | `call` | INFO | server, inside `connection`, entered whenever the handler runs (its own events are inside it) | `service`, `method`, `seqid`, `peer_pid`, `peer_uid`, `fds_in`, `fds_out` (at the reply), `trace_id` |
//! | `client_call` | INFO | both clients, around one call | `method`, `seqid`, `trace_id` |
//!
//! Events: a connection that fails is a WARN in its `connection` span; a reply or stream
//! item that cannot be encoded, an ERROR in its `call` span; a call refused (by a hook, an
//! unknown method) a DEBUG. A call that logs nothing still shows up when spans are printed as
//! they close:
//!
//! ```
//! use tracing_subscriber::fmt::format::FmtSpan;
//!
//! // One line per call as it ends, with its fields and how long it took.
//! let _ = tracing_subscriber::fmt()
//!     .with_max_level(tracing::Level::INFO)
//!     .with_span_events(FmtSpan::CLOSE)
//!     .try_init();
//! ```
//!
//! **A trace id follows every call** (W3C `traceparent`, [`TraceContext`]). A server that
//! gets a call without one starts a trace; the handler runs in it ([`Context::trace`],
//! [`TraceContext::current`]) and the calls it makes carry it on, so both sides' spans and
//! every hop after share one `trace_id`. A client sends the trace it runs in (inside a
//! handler, or inside [`TraceContext::scope`] / [`TraceContext::attach`]), or a new one when
//! its `client_call` span is recorded. The `fdrpc` command line continues the trace in
//! `TRACEPARENT`, or starts one, and hands it to an `--exec` command the same way.
//!
//! **OpenTelemetry**: with `tracing-opentelemetry`, fdrpc's spans reach a collector as
//! OpenTelemetry spans; a [`TraceBridge`] ([`set_trace_bridge`]) makes the ids a call carries
//! the ones OpenTelemetry gave its span, so the collector sees the calls of several
//! processes as one tree. `examples/otel` in the repository is that bridge, run across two
//! processes (`cargo run -p fdrpc-example-otel`).
//!
//! # More
//!
//! - [`Server`]: serving ([`Server::serve`], graceful [`Server::serve_with_shutdown`]), several
//!   services on one socket ([`ServiceSet`]), per-connection authorization
//!   ([`Server::authorize`]) and per-call hooks ([`CallHook`]: per-method authorization, rate
//!   limits, metrics).
//! - [`Listener`], [`systemd`] (socket activation, readiness, the fd store) and [`child`] (a
//!   worker process with a connection) for daemons.
//! - [`Context`]: the caller's credentials ([`PeerCredentials`]), the deadline, the trace
//!   ([`TraceContext`]; see [Tracing](#tracing)), and [`Context::serve`] for endpoints (see
//!   [Services as fields](#services-as-fields)).
//! - [`SealedMemfd`]: shared memory read in place ([`SealedMemfd::map`]) and written in place
//!   ([`MemfdWriter`]), safe between processes that do not trust each other.
//! - [`Channel`]: single messages with fds over a socket, without a service.
//! - The wire protocol, for peers in other languages:
//!   [docs/PROTOCOL.md](https://github.com/fdrpc/fdrpc/blob/main/docs/PROTOCOL.md); the
//!   threat model and limits:
//!   [docs/SECURITY.md](https://github.com/fdrpc/fdrpc/blob/main/docs/SECURITY.md).
//!
//! # Features
//!
//! - `tokio` (default): the async [`Client`], the [`Server`] and async streams. Without it
//!   (`default-features = false`), the blocking client, the [`BlockingServer`], [`Channel`]
//!   and the codec build with no async runtime: a program can serve and call with fds,
//!   streams and sinks on plain threads.
//!
//! **A service trait shared by several programs** belongs in a crate of its own that depends
//! on `fdrpc = { version = "…", default-features = false }`, and each program chooses: an
//! async one depends on `fdrpc` with its default features as well, a blocking-only one does
//! not. Cargo builds one `fdrpc` per build with the union of the features asked for, and the
//! code `#[fdrpc::service]` generates follows it (the async client and server appear only
//! when `tokio` is on), so the trait crate serves both. A trait crate that leaves the default
//! features on forces tokio into every program that uses it, blocking-only ones included.
//! `no-tokio/` in the repository is such a blocking-only program; `.ci/run` checks that tokio
//! is not in its dependency tree.
//!
//! fdrpc's own dependencies build one version of `syn` (3): the macros and `thiserror` share
//! it, and `tracing` is used without its `attributes` feature.
#![deny(missing_docs)]

// Generated code names `::fdrpc`; the documentation-only example below is generated here.
#[cfg(doc)]
extern crate self as fdrpc;

pub use fdrpc_macros::{Message, service};
pub use fdrpc_runtime::*;

#[doc(hidden)]
pub use fdrpc_runtime::__private;

#[cfg(all(doc, feature = "tokio"))]
pub mod example;
