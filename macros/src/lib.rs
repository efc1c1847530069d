//! Macros of [fdrpc](https://docs.rs/fdrpc): `#[derive(Message)]` and `#[service]`. Use them
//! through the `fdrpc` crate, which re-exports them; their documentation (the full attribute
//! reference) is on each macro. Generated code reaches the runtime only through
//! `fdrpc::__private`.
#![deny(missing_docs)]

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;
mod fallback;
mod symbol;

use proc_macro::TokenStream;
use syn::{DeriveInput, ItemTrait, parse_macro_input};

/// Makes a type travel in fdrpc messages: derives `fdrpc::Wire` (and `fdrpc::Message` for
/// structs and unions).
///
/// # On what
///
/// - A struct with named fields: a Thrift `struct`. Its fields may be any wire type: `bool`,
///   integers (unsigned ones travel in the next wider signed Thrift integer, checked, not
///   truncated; `fdrpc::U64Bits` carries a `u64`'s full range), `f64`, `String`, `Vec<u8>`
///   (Thrift `binary`), `Vec`, `VecDeque`, sets, maps, `Box`, `()`, owned fd types (`OwnedFd`,
///   `File`, `UnixStream`, `PipeReader`, ...; the checked ones `fdrpc::RegularFile`,
///   `fdrpc::SealedMemfd`, ...), other types that derive `Message`, and `Option` of any of
///   these (an optional field).
/// - An enum of unit variants: a Thrift `enum` (an `i32`; explicit discriminants are kept).
/// - An enum whose variants hold one value each (or none): a Thrift `union`.
///
/// Generic types are allowed (`T: fdrpc::Wire` bounds are added where needed). If the type
/// implements `Display`, `fdrpc::CallError` shows it through that when it is a service's
/// declared error.
///
/// # Attributes
///
/// | attribute | where | what it does |
/// |---|---|---|
/// | `#[fdrpc(rename = "Name")]` | the type | its Thrift name (default: the Rust name) |
/// | `#[fdrpc(crate = path)]` | the type | where the `fdrpc` crate is (default `::fdrpc`), for crates that rename it |
/// | `#[fdrpc(id = N)]` | a field, a union variant | its Thrift field id, 1 to 32767 (default: its position, counting from 1; explicit ids do not renumber the others) |
/// | `#[fdrpc(rename = "name")]` | a field, a variant | its Thrift name |
/// | `#[fdrpc(binary)]` | a `Vec<u8>` or `Option<Vec<u8>>` field | Thrift `binary` (what a `Vec<u8>` is anyway; kept for older code) |
/// | `#[fdrpc(fd)]` | a field | asserts that it holds descriptors: a compile error otherwise |
///
/// Ids are what travel: renaming a field is compatible, renumbering it is not. A `RawFd`,
/// `BorrowedFd` or `&OwnedFd` field is a compile error (ownership must move with the
/// message), as are duplicate ids and names.
///
/// # Examples
///
/// ```
/// use std::os::fd::OwnedFd;
///
/// #[derive(fdrpc::Message, Debug)]
/// struct Opened {
///     path: String,
///     file: std::fs::File,
///     #[fdrpc(id = 5)]
///     extra: Vec<OwnedFd>,
///     checksum: Option<fdrpc::U64Bits>,
/// }
///
/// #[derive(fdrpc::Message, Debug, PartialEq)]
/// enum Mode {
///     Read,
///     Write = 2,
/// }
///
/// #[derive(fdrpc::Message, Debug)]
/// enum Source {
///     Path(String),
///     Fd(OwnedFd),
///     Stdin,
/// }
///
/// let (bytes, fds) = fdrpc::encode(Mode::Write)?;
/// assert_eq!(fdrpc::decode::<Mode>(&bytes, fds)?, Mode::Write);
/// # let _ = (std::any::type_name::<Opened>(), std::any::type_name::<Source>());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[proc_macro_derive(Message, attributes(fdrpc))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    message_pipeline(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Parse, check, generate; beside errors, a stub impl keeps uses of the type from failing too.
fn message_pipeline(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let cx = ctxt::Ctxt::new();
    let Some(cont) = ast::Container::from_syn(&cx, input) else {
        cx.check()?;
        unreachable!("from_syn returns None only after recording an error");
    };
    check::check(&cx, &cont);
    if let Err(e) = cx.check() {
        let mut out = e.to_compile_error();
        out.extend(fallback::message(&cont));
        return Ok(out);
    }
    Ok(expand::message::expand(&cont))
}

/// Turns a trait of `async fn` methods into an fdrpc service: a client, a blocking client and
/// a server for it.
///
/// The trait is rewritten so that every method returns a `Send` future (so handlers run on
/// any runtime thread); implement it with `async fn` as written. The `fdrpc::example` module
/// of the `fdrpc` documentation shows everything this generates for a sample service, with
/// every signature.
///
/// # What it generates
///
/// For `trait Broker`:
///
/// | item | what it is |
/// |---|---|
/// | `BrokerClient` | the async client (tokio): `connect(path).await`, `new(fdrpc::Client)`, `from_std(stream)`, `multiplexed(client)`, `with_timeout(d)`, `without_timeout()`, `client()`, `idl()`, and one `async fn` per method |
/// | `BrokerBlockingClient` | the blocking client (plain threads, no runtime): the same items, methods that block |
/// | `BrokerServer<T: Broker>` | what `fdrpc::Server::serve` takes: `new(impl)`, `from_arc(arc)`, `get_ref()` |
/// | `BrokerMethod` | the methods as an enum (`BrokerMethod::Open`, ...): `name()` (the wire name), `from_name`, `ALL`, `SERVICE`, and `of(cx)`: which method a call is, for hooks and handlers, following any rename |
///
/// A client method takes the parameters (without a `cx: &fdrpc::Context`) and returns
/// `Result<T, fdrpc::RpcError>`, or `Result<T, fdrpc::CallError<E>>` for a method declared
/// `-> Result<T, E>` (`CallError::Service(E)` is the declared error, `CallError::Rpc` the
/// rest). A server stream comes back as `fdrpc::Streaming<T, E>` (a `futures::Stream`) or, on
/// the blocking client, `fdrpc::BlockingStreaming<T, E>` (an `Iterator`). A sink parameter
/// takes an `fdrpc::Stream<T, E>` on the async client and any `IntoIterator` of items on the
/// blocking one.
///
/// # Attributes
///
/// | attribute | where | what it does |
/// |---|---|---|
/// | `#[fdrpc::service(rename = "Name")]` | the trait | the Thrift service name (default: the trait's name) |
/// | `#[fdrpc::service(crate = path)]` | the trait | where the `fdrpc` crate is (default `::fdrpc`) |
/// | `#[oneway]` or `#[fdrpc(oneway)]` | a method | no reply: the client returns once the call is sent (queued, on the async client: `client().flush().await` waits until it is written), errors of the handler are not reported, and the server runs oneway calls of a connection in order |
/// | `#[fdrpc(name = "wire_name")]` (or `rename`) | a method | its Thrift method name |
/// | `#[fdrpc(id = N)]` | a parameter | its field id in the `{method}_args` struct (default: its position, counting from 1, not counting `cx`) |
/// | `#[fdrpc(rename = "name")]` | a parameter | its Thrift name |
/// | `#[fdrpc(binary)]`, `#[fdrpc(fd)]` | a parameter | as on a struct field (see `#[derive(Message)]`) |
///
/// # Methods
///
/// - `&self`, then parameters of wire types; a parameter `cx: &fdrpc::Context` (anywhere)
///   gives the handler the caller's credentials, the call's deadline and trace; it is not on
///   the wire.
/// - Returns: `T`; `()`; `Option<T>` (`None` travels as an absent result); `Result<T, E>`
///   with `E` a `Message` (a Thrift exception, which may carry fds); `fdrpc::Stream<T, E>`
///   (a server stream); `(R, fdrpc::Stream<T, E>)` (a first response, then the stream); or
///   `Result` of either of the last two (an `Err` refuses to open the stream).
/// - A parameter of type `fdrpc::Stream<T, E>` makes the call a sink: the client streams
///   items to the handler. With a stream returned as well, items flow both ways.
/// - Method names starting with `_fdrpc` are reserved; a name that a generated client item
///   has (`connect`, `new`, `with_timeout`, ...) is a compile error, except `idl`, which the
///   method takes over.
///
/// # Examples
///
/// ```
/// use std::os::fd::OwnedFd;
///
/// #[derive(fdrpc::Message, Debug)]
/// struct Denied {
///     reason: String,
/// }
///
/// #[fdrpc::service(rename = "FileBroker")]
/// trait Broker {
///     /// Opens `path` for reading.
///     async fn open(&self, path: String) -> Result<std::fs::File, Denied>;
///     /// Who is asking (not on the wire).
///     async fn whoami(&self, cx: &fdrpc::Context) -> u32;
///     /// Appends a line to the log; no reply.
///     #[oneway]
///     async fn log(&self, line: String);
///     /// The files of a directory, one at a time.
///     async fn files(&self, dir: String) -> fdrpc::Stream<OwnedFd>;
///     /// The total size of the files sent.
///     async fn total(&self, files: fdrpc::Stream<std::fs::File>) -> u64;
/// }
///
/// assert_eq!(<BrokerClient as fdrpc::Described>::NAME, "FileBroker");
/// assert!(BrokerClient::idl().contains("service FileBroker {"));
/// ```
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = parse_macro_input!(args with ast::service::ServiceArgs::parse_terminated);
    let item = parse_macro_input!(input as ItemTrait);
    service_pipeline(&args, &item).into()
}

/// Parse, check, generate: every error of the trait is reported at once.
fn service_pipeline(
    args: &ast::service::ServiceArgs,
    item: &ItemTrait,
) -> proc_macro2::TokenStream {
    let cx = ctxt::Ctxt::new();
    let options = ast::service::ServiceOptions::from_syn(&cx, args);
    let service = ast::service::Service::from_syn(&cx, options, item);
    check::service::check(&cx, &service);
    let generator = expand::service::ServiceGenerator::new(&service);
    match cx.check() {
        Ok(()) => quote::ToTokens::into_token_stream(generator),
        Err(e) => {
            // Keep the trait so code using it reports no follow-on errors.
            let mut out = e.to_compile_error();
            out.extend(generator.trait_def());
            out
        }
    }
}
