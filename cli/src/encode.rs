//! Arguments and sink items from JSON: checked against the server's IDL first, every error
//! naming the parameter (`bundle.fds.1: expected fd ...`), then written in the compact
//! protocol with their fds.

use std::os::fd::OwnedFd;

use base64::Engine as _;
use fdrpc::codec::{Decoder, Encoder, TType};
use fdrpc::{DecodeError, DecodeErrorKind, EncodeError, Wire};
use serde_json::Value;

use crate::fds::FdSource;
use crate::field_path::join;
use crate::schema::{Field, Schema, StructKind, Type};

/// A value checked against its type, ready to write.
#[derive(Debug)]
pub enum Out {
    Bool(bool),
    Byte(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    Double(f64),
    Binary(Vec<u8>),
    Fd(OwnedFd),
    List(TType, Vec<Out>),
    Map(TType, TType, Vec<(Out, Out)>),
    Struct(Vec<(i16, Out)>),
}

impl Out {
    fn ttype(&self) -> TType {
        match self {
            Out::Bool(_) => TType::Bool,
            Out::Byte(_) => TType::Byte,
            Out::I16(_) => TType::I16,
            Out::I32(_) | Out::Fd(_) => TType::I32,
            Out::I64(_) => TType::I64,
            Out::Double(_) => TType::Double,
            Out::Binary(_) => TType::Binary,
            Out::List(..) => TType::List,
            Out::Map(..) => TType::Map,
            Out::Struct(_) => TType::Struct,
        }
    }

    /// Writes the value (its fds move into the encoder's table).
    ///
    /// # Errors
    ///
    /// What Thrift cannot represent (a string longer than 2^31 - 1, ...).
    pub fn write(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        match self {
            Out::Bool(b) => enc.write_bool(b),
            Out::Byte(n) => enc.write_i8(n),
            Out::I16(n) => enc.write_i16(n),
            Out::I32(n) => enc.write_i32(n),
            Out::I64(n) => enc.write_i64(n),
            Out::Double(x) => enc.write_double(x),
            Out::Binary(b) => enc.write_binary(&b)?,
            Out::Fd(fd) => enc.write_fd(fd)?,
            Out::List(elem, items) => {
                enc.write_list_header(elem, items.len())?;
                for item in items {
                    item.write(enc)?;
                }
            }
            Out::Map(k, v, entries) => {
                enc.write_map_header(k, v, entries.len())?;
                for (key, value) in entries {
                    key.write(enc)?;
                    value.write(enc)?;
                }
            }
            Out::Struct(fields) => {
                let mut last = 0;
                for (id, value) in fields {
                    value.write_field(id, &mut last, enc)?;
                }
                enc.write_stop();
            }
        }
        Ok(())
    }

    /// Writes the value as field `id` of a struct (a bool goes into the field header, as the
    /// compact protocol has it).
    ///
    /// # Errors
    ///
    /// As [`Out::write`].
    pub fn write_field(
        self,
        id: i16,
        last: &mut i16,
        enc: &mut Encoder,
    ) -> Result<(), EncodeError> {
        if let Out::Bool(b) = self {
            enc.write_field_header(if b { 1 } else { 2 }, id, last);
            return Ok(());
        }
        enc.write_field_header(self.ttype() as u8, id, last);
        self.write(enc)
    }
}

/// The arguments struct of a call, checked.
#[derive(Debug)]
pub struct Args(pub Out);

impl Wire for Args {
    const TTYPE: TType = TType::Struct;
    const HAS_FDS: bool = true;

    fn encode(self, enc: &mut Encoder) -> Result<(), EncodeError> {
        self.0.write(enc)
    }

    /// Arguments are only sent.
    fn decode(_: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Err(DecodeErrorKind::MissingField.into())
    }

    fn idl_type(_: &mut fdrpc::idl::Idl) -> String {
        "binary".into()
    }
}

/// Builds checked values from JSON, taking fds from the pushed ones or from paths.
pub struct Build<'a> {
    pub schema: &'a Schema,
    pub fds: &'a FdSource,
}

impl Build<'_> {
    /// The arguments struct of `params` from the JSON object `args`: each parameter by name;
    /// an optional one may be left out (or `null`).
    ///
    /// # Errors
    ///
    /// A missing or unknown parameter, or a value that does not match its type.
    pub fn args(&self, params: &[Field], args: &Value) -> Result<Out, String> {
        let Value::Object(given) = args else {
            return Err(format!(
                "the arguments must be a JSON object of parameters by name ({}), not {args}",
                names(params)
            ));
        };
        if let Some(unknown) = given
            .keys()
            .find(|k| !params.iter().any(|p| answers_to(p, k)))
        {
            return Err(format!(
                "no parameter `{unknown}`; the parameters are: {}",
                names(params)
            ));
        }
        self.fields(params, given, "", true)
    }

    fn fields(
        &self,
        fields: &[Field],
        given: &serde_json::Map<String, Value>,
        path: &str,
        arguments: bool,
    ) -> Result<Out, String> {
        let mut out = Vec::new();
        for f in fields {
            let value = given
                .get(&f.name)
                .or_else(|| f.name.strip_suffix('_').and_then(|plain| given.get(plain)));
            match value {
                None | Some(Value::Null) if f.optional => {}
                None | Some(Value::Null) => {
                    let what = if arguments { "parameter" } else { "field" };
                    return Err(format!(
                        "missing {what} `{}` ({})",
                        join(path, &f.name),
                        f.ty
                    ));
                }
                Some(v) => out.push((f.id, self.value(&f.ty, v, &join(path, &f.name))?)),
            }
        }
        Ok(Out::Struct(out))
    }

    /// A value of type `ty` from `json`, at `path` (for messages).
    ///
    /// # Errors
    ///
    /// `json` does not fit `ty`.
    pub fn value(&self, ty: &Type, json: &Value, path: &str) -> Result<Out, String> {
        let wrong = || format!("`{path}`: expected {}, got {json}", expected(ty));
        let int = |min: i64, max: i64| {
            json.as_i64()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(wrong)
        };
        Ok(match ty {
            Type::Void => return Err(format!("`{path}`: void takes no value")),
            Type::Bool => Out::Bool(json.as_bool().ok_or_else(wrong)?),
            Type::Byte => Out::Byte(int(i8::MIN.into(), i8::MAX.into())? as i8),
            Type::I16 => Out::I16(int(i16::MIN.into(), i16::MAX.into())? as i16),
            Type::I32 => Out::I32(int(i32::MIN.into(), i32::MAX.into())? as i32),
            Type::I64 => Out::I64(json.as_i64().ok_or_else(wrong)?),
            Type::Double => Out::Double(json.as_f64().ok_or_else(wrong)?),
            Type::String => Out::Binary(json.as_str().ok_or_else(wrong)?.as_bytes().to_vec()),
            Type::Binary => {
                let text = json.as_str().ok_or_else(wrong)?;
                Out::Binary(
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|e| format!("`{path}`: binary is base64 here: {e}"))?,
                )
            }
            Type::Enum(name) => {
                let values = self.schema.enums.get(name).ok_or_else(wrong)?;
                let n = match json {
                    Value::String(s) => values
                        .iter()
                        .find(|(v, _)| v == s)
                        .map(|(_, n)| *n)
                        .ok_or_else(|| {
                            let known: Vec<&str> = values.iter().map(|(v, _)| v.as_str()).collect();
                            format!("`{path}`: {name} has no value `{s}` ({})", known.join(", "))
                        })?,
                    _ => int(i32::MIN.into(), i32::MAX.into())? as i32,
                };
                Out::I32(n)
            }
            Type::Fd(_) => Out::Fd(self.fds.fd(json).map_err(|e| format!("`{path}`: {e}"))?),
            Type::List(t) | Type::Set(t) => {
                let items = json.as_array().ok_or_else(wrong)?;
                let items = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.value(t, v, &join(path, &i.to_string())))
                    .collect::<Result<_, _>>()?;
                Out::List(t.ttype(), items)
            }
            Type::Map(k, v) => {
                let entries: Vec<(Out, Out)> = match json {
                    Value::Object(m) if **k == Type::String => m
                        .iter()
                        .map(|(key, value)| {
                            Ok((
                                Out::Binary(key.as_bytes().to_vec()),
                                self.value(v, value, &join(path, key))?,
                            ))
                        })
                        .collect::<Result<_, String>>()?,
                    Value::Array(pairs) => pairs
                        .iter()
                        .enumerate()
                        .map(|(i, pair)| match pair.as_array().map(Vec::as_slice) {
                            Some([key, value]) => {
                                let at = join(path, &i.to_string());
                                Ok((
                                    self.value(k, key, &join(&at, "0"))?,
                                    self.value(v, value, &join(&at, "1"))?,
                                ))
                            }
                            _ => Err(format!(
                                "`{path}.{i}`: a map entry is a [key, value] pair, got {pair}"
                            )),
                        })
                        .collect::<Result<_, String>>()?,
                    _ => return Err(wrong()),
                };
                Out::Map(k.ttype(), v.ttype(), entries)
            }
            Type::Struct(name) => {
                let def = self.schema.structs.get(name).ok_or_else(wrong)?;
                let Value::Object(given) = json else {
                    return Err(wrong());
                };
                if let Some(unknown) = given
                    .keys()
                    .find(|k| !def.fields.iter().any(|f| answers_to(f, k)))
                {
                    return Err(format!(
                        "`{path}`: {name} has no field `{unknown}` ({})",
                        names(&def.fields)
                    ));
                }
                if def.kind == StructKind::Union {
                    let set = given.values().filter(|v| !v.is_null()).count();
                    if set != 1 {
                        return Err(format!(
                            "`{path}`: a {name} (a union) has exactly one field set, not {set}"
                        ));
                    }
                    let mut fields = def.fields.clone();
                    fields.iter_mut().for_each(|f| f.optional = true);
                    return self.fields(&fields, given, path, false);
                }
                self.fields(&def.fields, given, path, false)?
            }
        })
    }
}

/// Whether `key` names field `f`: its IDL name, or that name without the `_` the IDL adds to
/// a name that is a Thrift keyword or a type's (`2: fd fd_` is the Rust parameter `fd`).
fn answers_to(f: &Field, key: &str) -> bool {
    f.name == key || f.name.strip_suffix('_') == Some(key)
}

/// What a JSON value for `ty` looks like, for messages.
fn expected(ty: &Type) -> String {
    match ty {
        Type::Fd(_) => {
            "an fd: the index of a --push-fd (0 for the first), or {\"path\": ...}".into()
        }
        Type::Binary => "binary, as a base64 string".into(),
        Type::Struct(name) => format!("a {name} object"),
        Type::Map(k, _) if **k == Type::String => format!("{ty}, as an object"),
        Type::Map(..) => format!("{ty}, as a list of [key, value] pairs"),
        Type::Enum(name) => format!("a {name} value, by name or number"),
        other => other.to_string(),
    }
}

/// `a (i32), b (fd)`.
fn names(fields: &[Field]) -> String {
    if fields.is_empty() {
        return "none".into();
    }
    fields
        .iter()
        .map(|f| format!("{} ({})", f.name, f.ty))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IDL: &str = r#"
typedef i32 fd (fdrpc.fd = "any")
struct Bundle { 1: required string label, 2: required list<fd> fds, 3: optional fd spare, }
union Pick { 1: i32 n, 2: string s, }
enum Color { RED = 1, GREEN = 2, }
service S { void f(1: Bundle bundle, 2: map<i32, string> m, 3: Color c, 4: Pick p, 5: byte b), }
"#;

    fn check(args: Value) -> Result<Out, String> {
        let schema = Schema::parse(IDL).unwrap();
        let fds = FdSource::default();
        let build = Build {
            schema: &schema,
            fds: &fds,
        };
        let f = schema.function("f").unwrap().clone();
        build.args(&f.params, &args)
    }

    #[test]
    fn arguments_are_checked_against_the_idl_and_errors_name_the_parameter() {
        let ok = json!({
            "bundle": {"label": "x", "fds": []},
            "m": [[1, "one"]],
            "c": "GREEN",
            "p": {"s": "y"},
            "b": -3,
        });
        assert!(check(ok).is_ok());
        for (args, says) in [
            (json!([]), "JSON object"),
            (json!({"nope": 1}), "no parameter `nope`"),
            (
                json!({"m": [], "c": 1, "p": {"n": 1}, "b": 0}),
                "missing parameter `bundle`",
            ),
            (
                json!({"bundle": {"label": 5, "fds": []}, "m": [], "c": 1, "p": {"n": 1}, "b": 0}),
                "`bundle.label`: expected string",
            ),
            (
                json!({"bundle": {"label": "x", "fds": [7]}, "m": [], "c": 1, "p": {"n": 1}, "b": 0}),
                "`bundle.fds.0`",
            ),
            (
                json!({"bundle": {"label": "x", "fds": [], "extra": 1}, "m": [], "c": 1, "p": {"n": 1}, "b": 0}),
                "no field `extra`",
            ),
            (
                json!({"bundle": {"label": "x", "fds": []}, "m": [[1]], "c": 1, "p": {"n": 1}, "b": 0}),
                "[key, value] pair",
            ),
            (
                json!({"bundle": {"label": "x", "fds": []}, "m": [], "c": "BLUE", "p": {"n": 1}, "b": 0}),
                "no value `BLUE`",
            ),
            (
                json!({"bundle": {"label": "x", "fds": []}, "m": [], "c": 1, "p": {"n": 1, "s": "y"}, "b": 0}),
                "exactly one field",
            ),
            (
                json!({"bundle": {"label": "x", "fds": []}, "m": [], "c": 1, "p": {"n": 1}, "b": 300}),
                "`b`: expected byte",
            ),
        ] {
            let e = check(args.clone()).unwrap_err();
            assert!(e.contains(says), "{args}: {e}");
        }
    }

    /// Integers are range-checked against their Thrift type, `binary` is base64 and travels
    /// as exactly its bytes.
    #[test]
    fn integers_fit_their_type_and_binaries_are_their_bytes() {
        let schema = Schema::parse(IDL).unwrap();
        let fds = FdSource::default();
        let build = Build {
            schema: &schema,
            fds: &fds,
        };
        let i32_ty = Type::I32;
        for (n, fits) in [
            (json!(2_147_483_647), true),
            (json!(-2_147_483_648), true),
            (json!(2_147_483_648_i64), false),
            (json!(-2_147_483_649_i64), false),
            (json!(1.5), false),
        ] {
            match build.value(&i32_ty, &n, "n") {
                Ok(Out::I32(v)) => assert!(fits && json!(v) == n, "{n}"),
                Ok(other) => panic!("{n}: {other:?}"),
                Err(e) => assert!(!fits && e.contains("`n`: expected i32"), "{n}: {e}"),
            }
        }
        match build.value(&Type::I64, &json!(2_147_483_648_i64), "n") {
            Ok(Out::I64(v)) => assert_eq!(v, 2_147_483_648),
            other => panic!("{other:?}"),
        }
        // "AP8H" is base64 for the bytes 0, 255, 7.
        match build.value(&Type::Binary, &json!("AP8H"), "b") {
            Ok(Out::Binary(v)) => assert_eq!(v, [0, 255, 7]),
            other => panic!("{other:?}"),
        }
        let e = build
            .value(&Type::Binary, &json!("not base64!"), "b")
            .unwrap_err();
        assert!(e.contains("`b`: binary is base64"), "{e}");
        // A string is its UTF-8 bytes, not base64.
        match build.value(&Type::String, &json!("AP8H"), "s") {
            Ok(Out::Binary(v)) => assert_eq!(v, b"AP8H"),
            other => panic!("{other:?}"),
        }
    }
}
