//! Thrift's `TApplicationException`: the reply to a call the server could not run.

use crate::codec::error::{DecodeError, EncodeError};
use crate::codec::wire::Field;
use crate::codec::{Decoder, Encoder, TType};

/// Why the server could not run a call (Thrift `TApplicationException` types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplicationErrorKind {
    /// 0: unknown.
    Unknown,
    /// 1: no such method.
    UnknownMethod,
    /// 2: a message type the receiver does not accept here.
    InvalidMessageType,
    /// 3: the method name of a reply did not match the call.
    WrongMethodName,
    /// 4: a reply's sequence id matched no call.
    BadSequenceId,
    /// 5: the reply carries no result.
    MissingResult,
    /// 6: the handler failed (panicked, or its reply could not be encoded).
    InternalError,
    /// 7: the call's arguments could not be decoded.
    ProtocolError,
    /// 8: a THeader transform the receiver does not support.
    InvalidTransform,
    /// 9: a protocol the receiver does not support.
    InvalidProtocol,
    /// 10: a client type the receiver does not support.
    UnsupportedClientType,
    /// 11 (fbthrift): the server sheds load; try again later. What a rate-limiting
    /// [`CallHook`](crate::CallHook) refuses calls with.
    Loadshedding,
    /// 12 (fbthrift): the call's deadline (its `client_timeout`) passed before it finished.
    Timeout,
    /// 13 (fbthrift): a failure injected on purpose, for testing.
    InjectedFailure,
    /// Any other code.
    Other(i32),
}

impl ApplicationErrorKind {
    /// The Thrift code.
    pub fn code(self) -> i32 {
        match self {
            Self::Unknown => 0,
            Self::UnknownMethod => 1,
            Self::InvalidMessageType => 2,
            Self::WrongMethodName => 3,
            Self::BadSequenceId => 4,
            Self::MissingResult => 5,
            Self::InternalError => 6,
            Self::ProtocolError => 7,
            Self::InvalidTransform => 8,
            Self::InvalidProtocol => 9,
            Self::UnsupportedClientType => 10,
            Self::Loadshedding => 11,
            Self::Timeout => 12,
            Self::InjectedFailure => 13,
            Self::Other(c) => c,
        }
    }

    /// The kind of a Thrift code.
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => Self::Unknown,
            1 => Self::UnknownMethod,
            2 => Self::InvalidMessageType,
            3 => Self::WrongMethodName,
            4 => Self::BadSequenceId,
            5 => Self::MissingResult,
            6 => Self::InternalError,
            7 => Self::ProtocolError,
            8 => Self::InvalidTransform,
            9 => Self::InvalidProtocol,
            10 => Self::UnsupportedClientType,
            11 => Self::Loadshedding,
            12 => Self::Timeout,
            13 => Self::InjectedFailure,
            c => Self::Other(c),
        }
    }
}

/// A `TApplicationException`: `struct { 1: string message, 2: i32 type }`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ApplicationError {
    /// What kind of failure.
    pub kind: ApplicationErrorKind,
    /// The server's description.
    pub message: String,
}

impl ApplicationError {
    /// A new exception.
    pub fn new(kind: ApplicationErrorKind, message: impl Into<String>) -> Self {
        ApplicationError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn encode(&self, enc: &mut Encoder) -> Result<(), EncodeError> {
        let mut last = 0;
        enc.write_field_header(TType::Binary as u8, 1, &mut last);
        enc.write_binary(self.message.as_bytes())?;
        enc.write_field_header(TType::I32 as u8, 2, &mut last);
        enc.write_i32(self.kind.code());
        enc.write_stop();
        Ok(())
    }

    pub(crate) fn decode(dec: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let mut message = String::new();
        let mut code = 0;
        let mut last = 0;
        dec.enter()?;
        while let Some((ty, id)) = dec.read_field_header(&mut last)? {
            match id {
                1 => message = <String as Field>::decode_field(dec, ty)?,
                2 => code = <i32 as Field>::decode_field(dec, ty)?,
                _ => dec.skip(ty)?,
            }
        }
        dec.leave();
        Ok(ApplicationError {
            kind: ApplicationErrorKind::from_code(code),
            message,
        })
    }
}
