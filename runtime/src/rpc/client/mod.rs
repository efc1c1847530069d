//! The calling side of a connection: the async [`Client`] and the [`BlockingClient`], both
//! thin layers over the connection core and a driver.
//!
//! Organization:
//! - `async_client`: [`Client`], on tokio: many calls and streams in flight on one
//!   connection, their frames batched by the connection's writer.
//! - `blocking_client`: [`BlockingClient`], on plain threads: calls from several threads in
//!   flight together, without a runtime.

#[cfg(feature = "tokio")]
mod async_client;
mod blocking_client;

#[cfg(feature = "tokio")]
pub use async_client::Client;
pub use blocking_client::BlockingClient;

use crate::codec::error::DecodeError;
use crate::codec::fd_table::FdTable;
use crate::codec::{Decoder, MessageType};
use crate::rpc::app_exception::ApplicationError;
use crate::rpc::conn::Reply;
use crate::rpc::error::RpcError;

/// How a generated client decodes the result struct of a method.
pub(crate) type DecodeFn<R> = fn(&mut Decoder<'_>) -> Result<R, DecodeError>;

/// Decodes a reply: a result struct, or a `TApplicationException`.
fn decode_reply<R>(reply: Reply, decode: DecodeFn<R>) -> Result<R, RpcError> {
    let mut dec = Decoder::new(&reply.body, FdTable::new(reply.fds));
    match reply.ty {
        MessageType::Exception => Err(RpcError::Application(ApplicationError::decode(&mut dec)?)),
        _ => {
            let value = decode(&mut dec)?;
            dec.finish()?;
            Ok(value)
        }
    }
}

/// Decodes the reply of the introspection method.
fn decode_idl(dec: &mut Decoder<'_>) -> Result<String, DecodeError> {
    match crate::codec::call_result::decode_result::<String, std::convert::Infallible>(dec, false)?
    {
        Ok(idl) => Ok(idl),
        Err(never) => match never {},
    }
}
