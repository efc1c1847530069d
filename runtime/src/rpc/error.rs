//! Errors of calls: the service's own error apart from everything else.

use std::fmt;
use std::time::Duration;

use super::app_exception::ApplicationError;
use crate::codec::error::{DecodeError, EncodeError};
use crate::codec::wire::Field;
use crate::transport::error::TransportError;

/// Why a call failed for a reason other than the service's own error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The arguments could not be encoded; nothing was sent.
    #[error("could not encode the call: {0}")]
    Encode(#[from] EncodeError),
    /// The reply could not be decoded (its fds are closed).
    #[error("could not decode the reply: {0}")]
    Decode(#[from] DecodeError),
    /// The server answered with a `TApplicationException` (or a stream's producer aborted
    /// it with one).
    #[error("the server could not run the call: {0}")]
    Application(#[from] ApplicationError),
    /// This side found that the peer broke the protocol: a reply naming another method or of
    /// the wrong message type, stream items beyond the credit granted. Nothing the peer sent
    /// as an error: `kind` and `message` say what this side saw (its fds are closed).
    #[error("the peer broke the protocol: {0}")]
    Protocol(ApplicationError),
    /// No reply within the call's timeout; a late reply is discarded and its fds closed.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The connection failed or closed before the reply arrived.
    #[error("connection lost: {0}")]
    Connection(ConnectionError),
}

/// Why a connection ended, shared by every call that was pending on it.
#[derive(Debug, Clone)]
pub struct ConnectionError(std::sync::Arc<TransportError>);

impl ConnectionError {
    pub(crate) fn new(e: TransportError) -> Self {
        ConnectionError(std::sync::Arc::new(e))
    }

    /// The transport failure underneath.
    pub fn transport(&self) -> &TransportError {
        &self.0
    }

    /// Whether the peer closed the connection (rather than breaking the protocol).
    pub fn is_closed(&self) -> bool {
        matches!(
            *self.0,
            TransportError::Closed | TransportError::ClosedMidFrame(_)
        ) || matches!(&*self.0, TransportError::Io(e) if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset))
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The error of a method declared `-> Result<T, E>`: the service's `E`, or an [`RpcError`].
#[derive(Debug)]
pub enum CallError<E> {
    /// The service returned its own error (which may carry fds).
    Service(E),
    /// The call failed for another reason.
    Rpc(RpcError),
}

impl<E> CallError<E> {
    /// The service's error, if that is what this is.
    pub fn into_service(self) -> Option<E> {
        match self {
            CallError::Service(e) => Some(e),
            CallError::Rpc(_) => None,
        }
    }

    /// The other failure, if that is what this is.
    pub fn rpc(&self) -> Option<&RpcError> {
        match self {
            CallError::Service(_) => None,
            CallError::Rpc(e) => Some(e),
        }
    }
}

impl<E> From<RpcError> for CallError<E> {
    fn from(e: RpcError) -> Self {
        CallError::Rpc(e)
    }
}

/// The service's error is shown with its `Display` if its type has one (types that derive
/// `fdrpc::Message` tell), and with its `Debug` otherwise.
impl<E: fmt::Debug + Field> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Service(e) => match e.fmt_display(f) {
                Some(written) => written,
                None => write!(f, "the service returned an error: {e:?}"),
            },
            CallError::Rpc(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<E: fmt::Debug + Field> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Service(_) => None,
            CallError::Rpc(e) => Some(e),
        }
    }
}

/// A generated client method's outcome, flattened into what it returns: the success, or a
/// [`CallError`] holding the declared exception or the [`RpcError`]. Used by generated
/// clients of methods that declare an exception; [`flatten_undeclared`] is its twin for those
/// that declare none.
#[doc(hidden)]
pub fn flatten_declared<T, E>(outcome: Result<Result<T, E>, RpcError>) -> Result<T, CallError<E>> {
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError::Service(e)),
        Err(e) => Err(CallError::Rpc(e)),
    }
}

/// A generated client method's outcome, flattened into what it returns, for a method that
/// declares no exception: the success or the [`RpcError`].
#[doc(hidden)]
pub fn flatten_undeclared<T>(
    outcome: Result<Result<T, std::convert::Infallible>, RpcError>,
) -> Result<T, RpcError> {
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(never)) => match never {},
        Err(e) => Err(e),
    }
}
