//! The Thrift result struct of a method: field 0 is the success value, field 1 the declared
//! exception (the `E` of `Result<T, E>`). Used by generated code on both sides.

use super::error::{DecodeError, DecodeErrorKind, EncodeError};
use super::wire::{Field, Wire};
use super::{Decoder, Encoder, TType};
use crate::idl::Idl;

/// Writes the result struct of a method returning `T` (or `Result<T, E>`).
///
/// # Errors
///
/// As [`Wire::encode`].
pub fn encode_result<T: Field, E: Field>(
    enc: &mut Encoder,
    result: Result<T, E>,
) -> Result<(), EncodeError> {
    let mut last = 0;
    match result {
        Ok(v) => v.encode_field(0, &mut last, enc)?,
        Err(e) => e.encode_field(1, &mut last, enc)?,
    }
    enc.write_stop();
    Ok(())
}

/// Writes the result struct of a `void` method (or one returning `Result<(), E>`).
///
/// # Errors
///
/// As [`Wire::encode`].
pub fn encode_void_result<E: Field>(
    enc: &mut Encoder,
    result: Result<(), E>,
) -> Result<(), EncodeError> {
    let mut last = 0;
    if let Err(e) = result {
        e.encode_field(1, &mut last, enc)?;
    }
    enc.write_stop();
    Ok(())
}

fn decode_fields<T: Field, E: Field>(
    dec: &mut Decoder<'_>,
    has_exception: bool,
) -> Result<(Option<T>, Option<E>), DecodeError> {
    dec.enter()?;
    let (mut ok, mut err) = (None, None);
    let mut last = 0;
    while let Some((ty, id)) = dec.read_field_header(&mut last)? {
        match id {
            0 => ok = Some(T::decode_field(dec, ty).map_err(|e| e.in_field("success"))?),
            1 if has_exception => {
                err = Some(E::decode_field(dec, ty).map_err(|e| e.in_field("exception"))?)
            }
            _ => dec.skip(ty)?,
        }
    }
    dec.leave();
    Ok((ok, err))
}

/// Reads the result struct of a method returning `T` (or `Result<T, E>`). An absent success
/// field is `None` for `Option<T>` and an error otherwise.
///
/// # Errors
///
/// As [`Wire::decode`], or a missing `success` field.
pub fn decode_result<T: Field, E: Field>(
    dec: &mut Decoder<'_>,
    has_exception: bool,
) -> Result<Result<T, E>, DecodeError> {
    match decode_fields::<T, E>(dec, has_exception)? {
        (_, Some(e)) => Ok(Err(e)),
        (Some(v), None) => Ok(Ok(v)),
        (None, None) => T::missing()
            .map(Ok)
            .ok_or_else(|| DecodeError::new(DecodeErrorKind::MissingField).in_field("success")),
    }
}

/// Reads the result struct of a `void` method (or one returning `Result<(), E>`).
///
/// # Errors
///
/// As [`Wire::decode`].
pub fn decode_void_result<E: Field>(
    dec: &mut Decoder<'_>,
    has_exception: bool,
) -> Result<Result<(), E>, DecodeError> {
    match decode_fields::<(), E>(dec, has_exception)? {
        (_, Some(e)) => Ok(Err(e)),
        (_, None) => Ok(Ok(())),
    }
}

/// The exception of a method, or the error of a stream, that declares none. It has no values.
impl Wire for std::convert::Infallible {
    const TTYPE: TType = TType::Struct;
    fn idl_type(_: &mut Idl) -> String {
        // Never in a `throws`: methods without an exception declare none.
        "void".into()
    }
    fn encode(self, _: &mut Encoder) -> Result<(), EncodeError> {
        match self {}
    }
    fn decode(_: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Err(DecodeErrorKind::InvalidUnion("no exception or stream error is declared").into())
    }
}
