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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::convert::Infallible;

    use super::*;
    use crate::codec::fd_table::FdTable;

    /// The result struct of a `void` method that failed with the exception `7`.
    fn failed_with_7() -> Vec<u8> {
        let mut enc = Encoder::new();
        encode_void_result::<i32>(&mut enc, Err(7)).unwrap();
        enc.into_parts().0
    }

    #[test]
    fn a_declared_exception_is_read_and_an_undeclared_one_skipped() {
        let bytes = failed_with_7();
        let mut dec = Decoder::new(&bytes, FdTable::empty());
        assert_eq!(decode_void_result::<i32>(&mut dec, true).unwrap(), Err(7));
        // A method that declares no exception (a peer's newer version may): the field is
        // skipped like any unknown one, not read as the exception type that has no values.
        let mut dec = Decoder::new(&bytes, FdTable::empty());
        assert_eq!(
            decode_void_result::<Infallible>(&mut dec, false).unwrap(),
            Ok(())
        );
        dec.finish().unwrap();
        // With a return value, what is left is a missing success field.
        let mut dec = Decoder::new(&bytes, FdTable::empty());
        let e = decode_result::<i64, Infallible>(&mut dec, false).unwrap_err();
        assert!(matches!(e.kind(), DecodeErrorKind::MissingField), "{e}");
        assert_eq!(e.path(), "success");
    }
}
