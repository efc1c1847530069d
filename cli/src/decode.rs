//! Replies and stream items, read without generated code: first generically (the compact
//! protocol says each value's type, all but string against binary and fd against `i32`),
//! then rendered as JSON with the server's IDL, each fd described and kept for `--save-fd`
//! and `--exec`.

use std::os::fd::OwnedFd;

use base64::Engine as _;
use fdrpc::codec::{Decoder, TType};
use fdrpc::{DecodeError, FdTable, Field};
use serde_json::{Map, Value};

use crate::fds;
use crate::field_path::join;
use crate::schema::{Schema, StructKind, Type};

/// A value as the wire has it.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Bool(bool),
    Byte(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    Double(f64),
    Binary(Vec<u8>),
    Struct(Vec<(i16, Raw)>),
    List(Vec<Raw>),
    Map(Vec<(Raw, Raw)>),
}

/// Reads a value of type `ty`.
///
/// # Errors
///
/// Malformed input (the decoder's bounds apply: lengths, depth).
pub fn read(dec: &mut Decoder<'_>, ty: TType) -> Result<Raw, DecodeError> {
    Ok(match ty {
        TType::Bool => Raw::Bool(dec.read_bool()?),
        TType::Byte => Raw::Byte(dec.read_i8()?),
        TType::I16 => Raw::I16(dec.read_i16()?),
        TType::I32 => Raw::I32(dec.read_i32()?),
        TType::I64 => Raw::I64(dec.read_i64()?),
        TType::Double => Raw::Double(dec.read_double()?),
        TType::Binary => Raw::Binary(dec.read_binary()?.to_vec()),
        TType::Struct => Raw::Struct(read_struct(dec)?),
        TType::List | TType::Set => {
            let (elem, n) = dec.read_list_header()?;
            dec.enter()?;
            let items = (0..n).map(|_| read(dec, elem)).collect::<Result<_, _>>()?;
            dec.leave();
            Raw::List(items)
        }
        TType::Map => {
            let (k, v, n) = dec.read_map_header()?;
            dec.enter()?;
            let entries = (0..n)
                .map(|_| Ok((read(dec, k)?, read(dec, v)?)))
                .collect::<Result<_, DecodeError>>()?;
            dec.leave();
            Raw::Map(entries)
        }
    })
}

/// Reads a struct's fields, up to its stop byte.
///
/// # Errors
///
/// As [`read`].
pub fn read_struct(dec: &mut Decoder<'_>) -> Result<Vec<(i16, Raw)>, DecodeError> {
    dec.enter()?;
    let mut fields = Vec::new();
    let mut last = 0;
    while let Some((ty, id)) = dec.read_field_header(&mut last)? {
        fields.push((id, read(dec, ty)?));
    }
    dec.leave();
    Ok(fields)
}

/// A reply's result struct and the fds of its frame, read generically.
#[derive(Debug)]
pub struct RawReply {
    pub fields: Vec<(i16, Raw)>,
    pub fds: FdTable,
}

/// Reads a reply generically: how the untyped client decodes it.
///
/// # Errors
///
/// As [`read`].
pub fn raw_reply(dec: &mut Decoder<'_>) -> Result<RawReply, DecodeError> {
    let fields = read_struct(dec)?;
    Ok(RawReply {
        fields,
        fds: dec.take_fds(),
    })
}

/// A stream item (or a stream's error) read generically, with its frame's fds; or one to
/// send, built from JSON ([`crate::encode::Out`]).
#[derive(Debug)]
pub enum Item {
    Received(Raw, FdTable),
    ToSend(crate::encode::Out),
}

impl Field for Item {
    const TTYPE: TType = TType::Struct;
    const OPTIONAL: bool = false;
    const HAS_FDS: bool = true;

    fn encode_field(
        self,
        id: i16,
        last: &mut i16,
        enc: &mut fdrpc::codec::Encoder,
    ) -> Result<(), fdrpc::EncodeError> {
        match self {
            Item::ToSend(out) => out.write_field(id, last, enc),
            // Received items are printed, never sent back.
            Item::Received(..) => Ok(()),
        }
    }

    fn decode_field(dec: &mut Decoder<'_>, found: TType) -> Result<Self, DecodeError> {
        let raw = read(dec, found)?;
        Ok(Item::Received(raw, dec.take_fds()))
    }

    fn missing() -> Option<Self> {
        None
    }

    fn idl_type(_: &mut fdrpc::idl::Idl) -> String {
        "binary".into()
    }

    fn fmt_display(&self, _: &mut std::fmt::Formatter<'_>) -> Option<std::fmt::Result> {
        None
    }
}

/// An fd that came back, where it appeared in the printed JSON (`log`, `fds.1`; empty for
/// the value itself).
#[derive(Debug)]
pub struct ReturnedFd {
    pub path: String,
    pub fd: OwnedFd,
    /// The fd's kind as the IDL declares it (`any`, `client_end:Session`, ...).
    pub kind: String,
}

/// Renders received values as JSON, claiming their fds from the frame's table.
pub struct Render<'s> {
    schema: &'s Schema,
    table: FdTable,
    /// Every fd rendered so far, in order.
    pub fds: Vec<ReturnedFd>,
}

impl<'s> Render<'s> {
    pub fn new(schema: &'s Schema, table: FdTable) -> Self {
        Render {
            schema,
            table,
            fds: Vec::new(),
        }
    }

    /// The JSON of `raw`, read as a value of `ty`, at `path` in the output.
    ///
    /// # Errors
    ///
    /// The value does not match the type the IDL declares, or an fd index is out of range or
    /// claimed twice.
    pub fn value(&mut self, ty: &Type, raw: Raw, path: &str) -> Result<Value, String> {
        let mismatch =
            |raw: &Raw| format!("{}: expected {ty}, the server sent {raw:?}", shown(path));
        Ok(match (ty, raw) {
            (Type::Bool, Raw::Bool(b)) => Value::Bool(b),
            (Type::Byte, Raw::Byte(n)) => n.into(),
            (Type::I16, Raw::I16(n)) => n.into(),
            (Type::I32, Raw::I32(n)) => n.into(),
            (Type::I64, Raw::I64(n)) => n.into(),
            (Type::Double, Raw::Double(x)) => {
                serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
            }
            (Type::String, Raw::Binary(b)) => match String::from_utf8(b) {
                Ok(s) => Value::String(s),
                Err(e) => return Err(format!("{}: a string that is not UTF-8: {e}", shown(path))),
            },
            (Type::Binary, Raw::Binary(b)) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (Type::Enum(name), Raw::I32(n)) => self
                .schema
                .enums
                .get(name)
                .and_then(|values| values.iter().find(|(_, v)| *v == n))
                .map_or_else(|| n.into(), |(v, _)| Value::String(v.clone())),
            (Type::Fd(kind), Raw::I32(index)) => {
                let fd = self
                    .table
                    .claim(index)
                    .map_err(|e| format!("{}: {e}", shown(path)))?;
                let mut described = fds::describe(&fd);
                if crate::schema::endpoint_service(kind).is_some() {
                    described["endpoint"] = Value::String(kind.clone());
                }
                self.fds.push(ReturnedFd {
                    path: path.to_owned(),
                    fd,
                    kind: kind.clone(),
                });
                described
            }
            (Type::List(t) | Type::Set(t), Raw::List(items)) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, raw)| self.value(t, raw, &join(path, &i.to_string())))
                    .collect::<Result<_, _>>()?,
            ),
            (Type::Map(k, v), Raw::Map(entries)) => {
                if **k == Type::String {
                    let mut out = Map::new();
                    for (key, value) in entries {
                        let Value::String(key) = self.value(k, key, path)? else {
                            continue;
                        };
                        let value = self.value(v, value, &join(path, &key))?;
                        out.insert(key, value);
                    }
                    Value::Object(out)
                } else {
                    // Keys that are not strings: a list of [key, value] pairs.
                    let mut out = Vec::new();
                    for (i, (key, value)) in entries.into_iter().enumerate() {
                        let at = join(path, &i.to_string());
                        let key = self.value(k, key, &join(&at, "0"))?;
                        let value = self.value(v, value, &join(&at, "1"))?;
                        out.push(Value::Array(vec![key, value]));
                    }
                    Value::Array(out)
                }
            }
            (Type::Struct(name), Raw::Struct(fields)) => self.structure(name, fields, path)?,
            (_, raw) => return Err(mismatch(&raw)),
        })
    }

    /// The JSON object of a struct's fields, by name; fields the IDL does not know are
    /// skipped (a newer server may have added them).
    fn structure(
        &mut self,
        name: &str,
        fields: Vec<(i16, Raw)>,
        path: &str,
    ) -> Result<Value, String> {
        let Some(def) = self.schema.structs.get(name) else {
            return Err(format!("{}: the IDL does not define `{name}`", shown(path)));
        };
        let mut out = Map::new();
        for (id, raw) in fields {
            let Some(field) = def.fields.iter().find(|f| f.id == id) else {
                continue;
            };
            let value = self.value(&field.ty, raw, &join(path, &field.name))?;
            out.insert(field.name.clone(), value);
        }
        if def.kind == StructKind::Union && out.len() > 1 {
            return Err(format!(
                "{}: a union with {} fields set",
                shown(path),
                out.len()
            ));
        }
        Ok(Value::Object(out))
    }

    /// Fds of the frame no value claimed: closed, and how many there were.
    pub fn unclaimed(self) -> usize {
        match self.table.finish() {
            Ok(()) => 0,
            Err(e) => match e.kind() {
                fdrpc::DecodeErrorKind::UnclaimedFds(n) => *n,
                _ => 0,
            },
        }
    }
}

/// A path for messages: `the result` for the top.
fn shown(path: &str) -> String {
    if path.is_empty() {
        "the result".into()
    } else {
        format!("`{path}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], ty: TType) -> Raw {
        let mut dec = Decoder::new(bytes, FdTable::empty());
        read(&mut dec, ty).unwrap()
    }

    #[test]
    fn values_read_generically_and_render_with_the_idl() {
        let schema = Schema::parse(
            "struct S { 1: required string name, 2: optional list<i32> ns, 3: required binary b, 4: required map<i32, bool> m, }",
        )
        .unwrap();
        let mut enc = fdrpc::codec::Encoder::new();
        let mut last = 0;
        enc.write_field_header(TType::Binary as u8, 1, &mut last);
        enc.write_binary(b"x").unwrap();
        enc.write_field_header(TType::List as u8, 2, &mut last);
        enc.write_list_header(TType::I32, 2).unwrap();
        enc.write_i32(1);
        enc.write_i32(2);
        enc.write_field_header(TType::Binary as u8, 3, &mut last);
        enc.write_binary(&[0, 255]).unwrap();
        enc.write_field_header(TType::Map as u8, 4, &mut last);
        enc.write_map_header(TType::I32, TType::Bool, 1).unwrap();
        enc.write_i32(7);
        enc.write_bool(true);
        enc.write_field_header(TType::I64 as u8, 9, &mut last);
        enc.write_i64(5);
        enc.write_stop();
        let (bytes, _) = enc.into_parts();
        let raw = decode(&bytes, TType::Struct);
        let mut r = Render::new(&schema, FdTable::empty());
        let json = r.value(&Type::Struct("S".into()), raw, "").unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "x", "ns": [1, 2], "b": "AP8=", "m": [[7, true]]})
        );
        assert_eq!(r.unclaimed(), 0);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error_naming_where() {
        let schema = Schema::default();
        let mut r = Render::new(&schema, FdTable::empty());
        let e = r.value(&Type::String, Raw::I32(1), "a.b").unwrap_err();
        assert!(e.contains("`a.b`") && e.contains("expected string"), "{e}");
        let e = r
            .value(&Type::Fd("any".into()), Raw::I32(0), "")
            .unwrap_err();
        assert!(e.contains("out of range"), "{e}");
    }
}
