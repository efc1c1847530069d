//! Services as fields: [`ClientEnd`] and [`ServerEnd`], the two ends of a connection typed by
//! the service spoken over it ([`Protocol`]), which travel in messages like any fd.
//!
//! The model is Fuchsia's FIDL (`ClientEnd<P>`, `ServerEnd<P>`, `create_endpoints::<P>()`)
//! and Chromium's Mojo (`PendingRemote<T>`, `PendingReceiver<T>`): an end is a connected Unix
//! stream socket plus, in its type only, the service on the other end. A client end becomes
//! the generated client; a server end is served with an implementation of the trait.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use crate::codec::error::{DecodeError, EncodeError};
use crate::codec::wire::Wire;
use crate::codec::{Decoder, Encoder, TType};
use crate::fd::inspect;
use crate::idl::Idl;
use crate::rpc::BlockingClient;
use crate::rpc::error::ConnectionError;
use crate::rpc::server::{BlockingServer, ServiceSet};

/// A service as a type: what [`ClientEnd`] and [`ServerEnd`] are typed by.
/// `#[fdrpc::service]` implements it for the `{Trait}Protocol` type it generates beside each
/// trait; nothing else should.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an fdrpc service protocol",
    label = "not a `{{Trait}}Protocol`",
    note = "`#[fdrpc::service]` on `trait Session` generates `SessionProtocol`: write `ClientEnd<SessionProtocol>` or `ServerEnd<SessionProtocol>`"
)]
pub trait Protocol: Send + Sync + 'static {
    /// The service's name, as its calls and its IDL name it.
    const NAME: &'static str;

    /// The generated async client (`{Trait}Client`).
    #[cfg(feature = "tokio")]
    type Client;

    /// The generated blocking client (`{Trait}BlockingClient`).
    type BlockingClient;

    /// The typed async client over an untyped one.
    #[cfg(feature = "tokio")]
    #[doc(hidden)]
    fn client(client: crate::rpc::Client) -> Self::Client;

    /// The typed blocking client over an untyped one.
    #[doc(hidden)]
    fn blocking_client(client: BlockingClient) -> Self::BlockingClient;

    /// Adds the service and its types to `idl`.
    #[doc(hidden)]
    fn describe(idl: &mut Idl);
}

/// `T` implements the service of the protocol `Self`: a [`ServerEnd<Self>`] can be served
/// with it. `#[fdrpc::service]` implements it for every implementation of the trait.
#[diagnostic::on_unimplemented(
    message = "`{T}` does not implement the service of `{Self}`",
    label = "a server end of `{Self}` is served with an implementation of its trait",
    note = "implement the trait that `#[fdrpc::service]` generated `{Self}` for"
)]
pub trait ServedBy<T>: Protocol {
    /// The generated server (`{Trait}Server<T>`).
    type Server: ServiceSet;

    /// The server of `implementation`.
    fn server(implementation: T) -> Self::Server;
}

/// A connected pair of ends of a new connection speaking `P`: the client end to hand to
/// whoever will call, the server end to serve (or to hand to whoever will serve).
///
/// # Errors
///
/// The error of `socketpair`.
///
/// # Examples
///
/// ```
/// #[fdrpc::service]
/// pub trait Counter {
///     async fn take(&self) -> i64;
/// }
///
/// struct Count(std::sync::atomic::AtomicI64);
///
/// impl Counter for Count {
///     async fn take(&self) -> i64 {
///         self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (client_end, server_end) = fdrpc::endpoints::<CounterProtocol>()?;
/// tokio::spawn(server_end.serve(Count(7.into())));
/// let counter = client_end.into_client()?;
/// assert_eq!(counter.take().await?, 7);
/// assert_eq!(counter.take().await?, 8);
/// # Ok(())
/// # }
/// ```
pub fn endpoints<P: Protocol>() -> std::io::Result<(ClientEnd<P>, ServerEnd<P>)> {
    let (a, b) = UnixStream::pair()?;
    // Before anything can be sent to it: every byte the server end receives then says who
    // sent it.
    ask_sender_credentials(&b)?;
    Ok((ClientEnd::new(a), ServerEnd::new(b)))
}

/// Sets `SO_PASSCRED` on the serving end of an endpoint: the kernel then attaches the
/// sender's credentials to every byte sent to it (the server reads them as each call's
/// [`Context::peer`](crate::Context::peer)), rather than the credentials of whoever made the
/// pair, which are all `SO_PEERCRED` knows.
pub(crate) fn ask_sender_credentials(stream: &UnixStream) -> std::io::Result<()> {
    rustix::net::sockopt::set_socket_passcred(stream, true)?;
    Ok(())
}

/// The calling end of a connection on which `P`'s service is served: becomes the generated
/// client ([`ClientEnd::into_client`], [`ClientEnd::into_blocking_client`]). A wire type: it
/// travels in any message as its socket's fd, checked on arrival to be a connected Unix
/// stream socket.
pub struct ClientEnd<P> {
    stream: UnixStream,
    protocol: PhantomData<fn() -> P>,
}

/// The serving end of a connection whose peer calls `P`'s service: served with an
/// implementation of the trait ([`ServerEnd::serve`], [`ServerEnd::serve_blocking`], or
/// [`Context::serve`](crate::Context::serve) on the server that runs the handler). A wire
/// type, as [`ClientEnd`] is.
pub struct ServerEnd<P> {
    stream: UnixStream,
    protocol: PhantomData<fn() -> P>,
}

macro_rules! end_common {
    ($end:ident, $side:literal) => {
        impl<P: Protocol> $end<P> {
            /// The end of `stream`, whose other end is taken to be the other side of `P`
            /// (nothing checks it: the type is your word).
            pub fn new(stream: UnixStream) -> Self {
                $end {
                    stream,
                    protocol: PhantomData,
                }
            }

            /// The socket underneath.
            pub fn into_stream(self) -> UnixStream {
                self.stream
            }
        }

        impl<P: Protocol> AsFd for $end<P> {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.stream.as_fd()
            }
        }

        impl<P: Protocol> From<$end<P>> for OwnedFd {
            fn from(end: $end<P>) -> OwnedFd {
                end.stream.into()
            }
        }

        impl<P: Protocol> fmt::Debug for $end<P> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($end))
                    .field("service", &P::NAME)
                    .field("fd", &std::os::fd::AsRawFd::as_raw_fd(&self.stream))
                    .finish()
            }
        }

        impl<P: Protocol> Wire for $end<P> {
            const TTYPE: TType = TType::I32;
            const HAS_FDS: bool = true;

            fn idl_type(idl: &mut Idl) -> String {
                P::describe(idl);
                idl.fd_typedef(
                    &format!("{}{}", P::NAME, stringify!($end)),
                    &format!(
                        "fdrpc.fd = \"unix_stream_socket\", fdrpc.endpoint = \"{}:{}\"",
                        $side,
                        P::NAME
                    ),
                )
            }

            #[inline]
            fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
                enc.write_fd(OwnedFd::from(self.stream))
            }

            fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                let fd = dec.read_fd()?;
                inspect::require(&fd, &inspect::Kind::ConnectedUnixStream)?;
                Ok($end::new(UnixStream::from(fd)))
            }
        }
    };
}

end_common!(ClientEnd, "client");
end_common!(ServerEnd, "server");

impl<P: Protocol> ClientEnd<P> {
    /// The generated async client (`{Trait}Client`) over this end.
    ///
    /// # Errors
    ///
    /// The error of registering the socket with the tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    #[cfg(feature = "tokio")]
    pub fn into_client(self) -> std::io::Result<P::Client> {
        Ok(P::client(crate::rpc::Client::from_std(self.stream)?))
    }

    /// The generated blocking client (`{Trait}BlockingClient`) over this end.
    pub fn into_blocking_client(self) -> P::BlockingClient {
        P::blocking_client(BlockingClient::new(self.stream))
    }
}

impl<P: Protocol> ServerEnd<P> {
    /// Serves `implementation` on this end, with the default settings, until the peer
    /// closes it (the future's output) or the future is dropped (the connection closes at
    /// once). To serve it within a server's limits and shutdown, use
    /// [`Context::serve`](crate::Context::serve) from a handler, or
    /// [`Server::serve_connection`](crate::Server::serve_connection) with its stream.
    ///
    /// # Errors
    ///
    /// Why the connection ended, if not by a clean close.
    #[cfg(feature = "tokio")]
    pub fn serve<T>(
        self,
        implementation: T,
    ) -> impl std::future::Future<Output = Result<(), ConnectionError>> + Send + 'static
    where
        P: ServedBy<T>,
    {
        let server = P::server(implementation);
        let asked = ask_sender_credentials(&self.stream);
        async move {
            asked.map_err(|e| ConnectionError::new(e.into()))?;
            crate::rpc::Server::new()
                .serve_connection(self.stream, server)
                .await
        }
    }

    /// Serves `implementation` on this end on the calling thread, with no async runtime
    /// (as [`BlockingServer::serve_connection`]), until the peer closes it.
    ///
    /// # Errors
    ///
    /// Why the connection ended, if not by a clean close.
    pub fn serve_blocking<T>(self, implementation: T) -> Result<(), ConnectionError>
    where
        P: ServedBy<T>,
    {
        ask_sender_credentials(&self.stream).map_err(|e| ConnectionError::new(e.into()))?;
        BlockingServer::new().serve_connection(self.stream, P::server(implementation))
    }
}
