//! The services a server serves, as its IDL (`_fdrpc_idl`) describes them: parsed with
//! `pilota-thrift-parser`, every name resolved, fd typedefs (`fdrpc.fd`) recognised, streams
//! and sinks (`fdrpc.stream`, `fdrpc.sink`) read from the functions' annotations.

use std::collections::HashMap;

use pilota_thrift_parser::{Annotations, Attribute, FileParser, FileSource, Item, Ty};

use crate::type_expr;

/// A resolved Thrift type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    Void,
    Bool,
    Byte,
    I16,
    I32,
    I64,
    Double,
    String,
    Binary,
    /// A file descriptor (an `i32` index into the frame's fd table on the wire), of a kind:
    /// `any`, `file`, `regular_file`, `directory`, `fifo`, `pipe_reader`, `sealed_memfd`...
    Fd(String),
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>, Box<Type>),
    /// A struct, union or exception, by name.
    Struct(String),
    /// An enum, by name.
    Enum(String),
}

impl Type {
    /// The Thrift type code of values of this type (`void` has none: a struct, empty).
    pub fn ttype(&self) -> fdrpc::codec::TType {
        use fdrpc::codec::TType;
        match self {
            Type::Void => TType::Struct,
            Type::Bool => TType::Bool,
            Type::Byte => TType::Byte,
            Type::I16 => TType::I16,
            Type::I32 | Type::Fd(_) | Type::Enum(_) => TType::I32,
            Type::I64 => TType::I64,
            Type::Double => TType::Double,
            Type::String | Type::Binary => TType::Binary,
            Type::List(_) => TType::List,
            Type::Set(_) => TType::Set,
            Type::Map(..) => TType::Map,
            Type::Struct(_) => TType::Struct,
        }
    }

    /// Whether values of this type can hold fds, given the definitions of `schema`.
    pub fn holds_fds(&self, schema: &Schema) -> bool {
        self.holds_fds_seen(schema, &mut Vec::new())
    }

    fn holds_fds_seen<'a>(&'a self, schema: &'a Schema, seen: &mut Vec<&'a str>) -> bool {
        match self {
            Type::Fd(_) => true,
            Type::List(t) | Type::Set(t) => t.holds_fds_seen(schema, seen),
            Type::Map(k, v) => k.holds_fds_seen(schema, seen) || v.holds_fds_seen(schema, seen),
            Type::Struct(name) => {
                if seen.contains(&name.as_str()) {
                    return false;
                }
                seen.push(name);
                schema
                    .structs
                    .get(name)
                    .is_some_and(|s| s.fields.iter().any(|f| f.ty.holds_fds_seen(schema, seen)))
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Type::Void => f.write_str("void"),
            Type::Bool => f.write_str("bool"),
            Type::Byte => f.write_str("byte"),
            Type::I16 => f.write_str("i16"),
            Type::I32 => f.write_str("i32"),
            Type::I64 => f.write_str("i64"),
            Type::Double => f.write_str("double"),
            Type::String => f.write_str("string"),
            Type::Binary => f.write_str("binary"),
            Type::Fd(kind) if kind == "any" => f.write_str("fd"),
            Type::Fd(kind) if endpoint_service(kind).is_some() => f.write_str(kind),
            Type::Fd(kind) => write!(f, "fd:{kind}"),
            Type::List(t) => write!(f, "list<{t}>"),
            Type::Set(t) => write!(f, "set<{t}>"),
            Type::Map(k, v) => write!(f, "map<{k}, {v}>"),
            Type::Struct(n) | Type::Enum(n) => f.write_str(n),
        }
    }
}

/// A field of a struct, or a parameter.
#[derive(Debug, Clone)]
pub struct Field {
    pub id: i16,
    /// The name as the IDL spells it (a Thrift keyword gets a `_` appended).
    pub name: String,
    pub ty: Type,
    pub optional: bool,
}

/// What kind of struct a definition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructKind {
    Struct,
    Union,
    Exception,
}

/// A struct, union or exception.
#[derive(Debug, Clone)]
pub struct StructDef {
    pub kind: StructKind,
    pub fields: Vec<Field>,
}

/// A stream of items (a server stream, or a sink), and its error type.
#[derive(Debug, Clone)]
pub struct StreamDef {
    pub item: Type,
    pub error: Option<Type>,
}

/// A function of a service.
#[derive(Debug, Clone)]
pub struct Function {
    pub service: String,
    pub name: String,
    pub doc: String,
    pub oneway: bool,
    pub params: Vec<Field>,
    /// `Type::Void` for none.
    pub returns: Type,
    pub throws: Option<Type>,
    /// The reply opens a stream of these items.
    pub stream: Option<StreamDef>,
    /// The call sends a stream of these items.
    pub sink: Option<StreamDef>,
}

/// Everything a server's IDL says.
#[derive(Debug, Default)]
pub struct Schema {
    /// Service names, in order.
    pub services: Vec<String>,
    pub functions: Vec<Function>,
    pub structs: HashMap<String, StructDef>,
    /// Enum values by enum name.
    pub enums: HashMap<String, Vec<(String, i32)>>,
}

/// What a typedef stands for.
enum Alias {
    Fd(String),
    Of(pilota_thrift_parser::Type),
}

impl Schema {
    /// Parses an IDL document.
    ///
    /// # Errors
    ///
    /// The parser's report, or a type that names nothing.
    pub fn parse(idl: &str) -> Result<Schema, String> {
        let file = FileParser::new(FileSource::new(idl))
            .parse()
            .map_err(|e| format!("the server's IDL does not parse: {e}"))?;
        let mut aliases = HashMap::new();
        let mut kinds = HashMap::new();
        for item in &file.items {
            match item {
                Item::Typedef(t) => {
                    let endpoint = annotation(&t.annotations, "fdrpc.endpoint");
                    let alias = match (annotation(&t.annotations, "fdrpc.fd"), endpoint) {
                        // `client:Session` -> the fd kind `client_end:Session` (FIDL's words).
                        (Some(_), Some(end)) => match end.split_once(':') {
                            Some((side, service)) => Alias::Fd(format!("{side}_end:{service}")),
                            None => Alias::Fd(end),
                        },
                        (Some(kind), None) => Alias::Fd(kind),
                        (None, _) => Alias::Of(t.r#type.clone()),
                    };
                    aliases.insert(t.alias.0.to_string(), alias);
                }
                Item::Struct(s) => {
                    kinds.insert(s.struct_like.name.0.to_string(), Some(StructKind::Struct));
                }
                Item::Union(s) => {
                    kinds.insert(s.struct_like.name.0.to_string(), Some(StructKind::Union));
                }
                Item::Exception(s) => {
                    kinds.insert(
                        s.struct_like.name.0.to_string(),
                        Some(StructKind::Exception),
                    );
                }
                Item::Enum(e) => {
                    kinds.insert(e.name.0.to_string(), None);
                }
                _ => {}
            }
        }
        let names = Names { aliases, kinds };
        let mut schema = Schema::default();
        for item in &file.items {
            match item {
                Item::Struct(s) => schema.add_struct(&names, &s.struct_like, StructKind::Struct)?,
                Item::Union(s) => schema.add_struct(&names, &s.struct_like, StructKind::Union)?,
                Item::Exception(s) => {
                    schema.add_struct(&names, &s.struct_like, StructKind::Exception)?;
                }
                Item::Enum(e) => {
                    let mut next = 0;
                    let values = e
                        .values
                        .iter()
                        .map(|v| {
                            let n = v.value.as_ref().map_or(next, |c| c.0 as i32);
                            next = n + 1;
                            (v.name.0.to_string(), n)
                        })
                        .collect();
                    schema.enums.insert(e.name.0.to_string(), values);
                }
                Item::Service(s) => {
                    let service = s.name.0.to_string();
                    for f in &s.functions {
                        let stream = |key: &str, err: &str| -> Result<Option<StreamDef>, String> {
                            let Some(item) = annotation(&f.annotations, key) else {
                                return Ok(None);
                            };
                            let error = annotation(&f.annotations, err)
                                .map(|e| names.resolve_text(&e))
                                .transpose()?;
                            Ok(Some(StreamDef {
                                item: names.resolve_text(&item)?,
                                error,
                            }))
                        };
                        schema.functions.push(Function {
                            service: service.clone(),
                            name: f.name.0.to_string(),
                            doc: doc_text(&f.leading_comments),
                            oneway: f.oneway,
                            params: names.fields(&f.arguments)?,
                            returns: names.resolve(&f.result_type)?,
                            throws: f.throws.first().map(|t| names.resolve(&t.ty)).transpose()?,
                            stream: stream("fdrpc.stream", "fdrpc.stream_error")?,
                            sink: stream("fdrpc.sink", "fdrpc.sink_error")?,
                        });
                    }
                    schema.services.push(service);
                }
                _ => {}
            }
        }
        Ok(schema)
    }

    fn add_struct(
        &mut self,
        names: &Names,
        s: &pilota_thrift_parser::StructLike,
        kind: StructKind,
    ) -> Result<(), String> {
        let fields = names.fields(&s.fields)?;
        self.structs
            .insert(s.name.0.to_string(), StructDef { kind, fields });
        Ok(())
    }

    /// The function `method` names: `Service:method`, or a plain name one service has. The
    /// reserved introspection method is not callable this way.
    ///
    /// # Errors
    ///
    /// No such method, or several services have one of that name.
    pub fn function(&self, method: &str) -> Result<&Function, String> {
        let (service, name) = match method.split_once(':') {
            Some((s, m)) => (Some(s), m),
            None => (None, method),
        };
        let mut found = self
            .functions
            .iter()
            .filter(|f| f.name == name && service.is_none_or(|s| s == f.service));
        match (found.next(), found.next()) {
            (Some(f), None) => Ok(f),
            (None, _) => {
                let known: Vec<String> = self
                    .functions
                    .iter()
                    .filter(|f| !f.name.starts_with("_fdrpc"))
                    .map(|f| self.display_name(f))
                    .collect();
                Err(format!(
                    "no method `{method}` here; the server has: {}",
                    known.join(", ")
                ))
            }
            (Some(_), Some(_)) => Err(format!(
                "several services have a method `{name}`: say which, as `Service:{name}`"
            )),
        }
    }

    /// How `f` is named on the command line: plainly, unless several services are served.
    pub fn display_name(&self, f: &Function) -> String {
        if self.services.len() > 1 {
            format!("{}:{}", f.service, f.name)
        } else {
            f.name.clone()
        }
    }
}

/// The names a document defines, to resolve types against.
struct Names {
    aliases: HashMap<String, Alias>,
    /// Structs, unions and exceptions (`Some`), enums (`None`).
    kinds: HashMap<String, Option<StructKind>>,
}

impl Names {
    fn fields(&self, fields: &[pilota_thrift_parser::Field]) -> Result<Vec<Field>, String> {
        fields
            .iter()
            .map(|f| {
                Ok(Field {
                    id: i16::try_from(f.id)
                        .map_err(|_| format!("field id {} out of range", f.id))?,
                    name: f.name.0.to_string(),
                    ty: self.resolve(&f.ty)?,
                    optional: matches!(f.attribute, Attribute::Optional),
                })
            })
            .collect()
    }

    fn resolve_text(&self, text: &str) -> Result<Type, String> {
        self.resolve(&type_expr::parse(text)?)
    }

    fn resolve(&self, ty: &pilota_thrift_parser::Type) -> Result<Type, String> {
        self.resolve_depth(ty, 0)
    }

    fn resolve_depth(&self, ty: &pilota_thrift_parser::Type, depth: u32) -> Result<Type, String> {
        if depth > 32 {
            return Err("typedefs nest too deep".into());
        }
        let r = |t: &pilota_thrift_parser::Type| self.resolve_depth(t, depth + 1).map(Box::new);
        Ok(match &ty.0 {
            Ty::Void => Type::Void,
            Ty::Bool => Type::Bool,
            Ty::Byte | Ty::I8 => Type::Byte,
            Ty::I16 => Type::I16,
            Ty::I32 => Type::I32,
            Ty::I64 => Type::I64,
            Ty::Double => Type::Double,
            Ty::String => Type::String,
            Ty::Binary => Type::Binary,
            Ty::Uuid => return Err("uuid fields are not supported".into()),
            Ty::List { value, .. } => Type::List(r(value)?),
            Ty::Set { value, .. } => Type::Set(r(value)?),
            Ty::Map { key, value, .. } => Type::Map(r(key)?, r(value)?),
            Ty::Path(p) => {
                let name: Vec<&str> = p.segments.iter().map(|s| &*s.0).collect();
                let name = name.join(".");
                match (self.aliases.get(&name), self.kinds.get(&name)) {
                    (Some(Alias::Fd(kind)), _) => Type::Fd(kind.clone()),
                    (Some(Alias::Of(t)), _) => self.resolve_depth(t, depth + 1)?,
                    (None, Some(Some(_))) => Type::Struct(name),
                    (None, Some(None)) => Type::Enum(name),
                    (None, None) => return Err(format!("the IDL names an unknown type `{name}`")),
                }
            }
        })
    }
}

/// The service of an endpoint's fd kind (`client_end:Session` or `server_end:Session`).
pub fn endpoint_service(kind: &str) -> Option<(&str, &str)> {
    let (side, service) = kind.split_once(':')?;
    matches!(side, "client_end" | "server_end").then_some((side, service))
}

/// The value of annotation `key`, if present.
fn annotation(a: &Annotations, key: &str) -> Option<String> {
    a.0.iter().find(|x| x.key == key).map(|x| x.value.0.clone())
}

/// A doc comment's text, without its `/** * */` decoration.
fn doc_text(comments: &str) -> String {
    comments
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("/**")
                .trim_end_matches("*/")
                .trim_start_matches('*')
                .trim()
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDL: &str = r#"
typedef i32 fd (fdrpc.fd = "any")
typedef i32 memfd (fdrpc.fd = "sealed_memfd", fdrpc.seals = "seal,grow")
typedef list<string> Words

struct Bundle {
  1: required string label,
  2: required list<fd> fds,
  3: optional fd spare,
}

exception Failure {
  1: required string message,
  2: optional memfd log,
}

enum Color {
  RED = 1,
  GREEN,
}

service A {
  /**
   * Echoes.
   */
  Bundle echo(1: Bundle bundle, 2: Words words, 3: Color color) throws (1: Failure error),
  void items(1: i32 n) (fdrpc.stream = "fd", fdrpc.stream_error = "Failure"),
  oneway void fire(1: fd fd),
}

service B {
  i64 echo(),
  i64 upload() (fdrpc.sink = "list<fd>"),
}
"#;

    #[test]
    fn the_idl_resolves_fds_streams_and_names() {
        let s = Schema::parse(IDL).unwrap();
        assert_eq!(s.services, ["A", "B"]);
        let bundle = &s.structs["Bundle"];
        assert_eq!(
            bundle.fields[1].ty,
            Type::List(Box::new(Type::Fd("any".into())))
        );
        assert!(bundle.fields[2].optional);
        assert_eq!(s.structs["Failure"].kind, StructKind::Exception);
        assert_eq!(
            s.structs["Failure"].fields[1].ty,
            Type::Fd("sealed_memfd".into())
        );
        assert_eq!(
            s.enums["Color"],
            [("RED".to_string(), 1), ("GREEN".to_string(), 2)]
        );
        assert!(s.function("echo").unwrap_err().contains("several services"));
        let echo = s.function("A:echo").unwrap();
        assert_eq!(echo.doc, "Echoes.");
        assert_eq!(echo.params[1].ty, Type::List(Box::new(Type::String)));
        assert_eq!(echo.params[2].ty, Type::Enum("Color".into()));
        assert_eq!(echo.throws, Some(Type::Struct("Failure".into())));
        assert!(echo.returns.holds_fds(&s));
        let items = s.function("items").unwrap();
        assert_eq!(items.stream.as_ref().unwrap().item, Type::Fd("any".into()));
        assert_eq!(
            items.stream.as_ref().unwrap().error,
            Some(Type::Struct("Failure".into()))
        );
        assert!(s.function("fire").unwrap().oneway);
        let upload = s.function("B:upload").unwrap();
        assert_eq!(
            upload.sink.as_ref().unwrap().item,
            Type::List(Box::new(Type::Fd("any".into())))
        );
        assert!(s.function("nope").unwrap_err().contains("A:items"));
    }

    #[test]
    fn fds_are_found_in_maps_on_either_side_and_through_structs() {
        let s = Schema::parse(IDL).unwrap();
        let fd = || Box::new(Type::Fd("any".into()));
        let string = || Box::new(Type::String);
        assert!(Type::Map(fd(), string()).holds_fds(&s));
        assert!(Type::Map(string(), Box::new(Type::List(fd()))).holds_fds(&s));
        assert!(!Type::Map(string(), string()).holds_fds(&s));
        assert!(Type::Map(string(), Box::new(Type::Struct("Bundle".into()))).holds_fds(&s));
        assert!(!Type::Set(Box::new(Type::Enum("Color".into()))).holds_fds(&s));
    }

    #[test]
    fn types_display_as_the_idl_writes_them() {
        for (ty, shown) in [
            (Type::Fd("any".into()), "fd"),
            (Type::Fd("sealed_memfd".into()), "fd:sealed_memfd"),
            (Type::Fd("client_end:Session".into()), "client_end:Session"),
            (Type::Fd("server_end:Session".into()), "server_end:Session"),
            (Type::Fd("other_end:Session".into()), "fd:other_end:Session"),
            (
                Type::Map(Box::new(Type::String), Box::new(Type::Struct("B".into()))),
                "map<string, B>",
            ),
        ] {
            assert_eq!(ty.to_string(), shown);
        }
    }

    #[test]
    fn methods_are_named_plainly_when_one_service_is_served() {
        let s = Schema::parse("service Only { void ping(), }").unwrap();
        let ping = s.function("ping").unwrap();
        assert_eq!(s.display_name(ping), "ping");
        let two = Schema::parse(IDL).unwrap();
        assert_eq!(two.display_name(two.function("fire").unwrap()), "A:fire");
    }

    #[test]
    fn types_nest_32_deep_and_no_deeper() {
        let nested = |n: usize| format!("{}i32{}", "list<".repeat(n), ">".repeat(n));
        let ok = Schema::parse(&format!("struct S {{ 1: required {} x, }}", nested(32)));
        let mut ty = &ok.unwrap().structs["S"].fields[0].ty;
        let mut depth = 0;
        while let Type::List(inner) = ty {
            ty = inner;
            depth += 1;
        }
        assert_eq!((depth, ty), (32, &Type::I32));
        let e =
            Schema::parse(&format!("struct S {{ 1: required {} x, }}", nested(33))).unwrap_err();
        assert!(e.contains("nest too deep"), "{e}");
        // A typedef that names itself through another ends there too, not in a stack overflow.
        let e =
            Schema::parse("typedef B A\ntypedef A B\nstruct S { 1: required A a, }").unwrap_err();
        assert!(e.contains("nest too deep"), "{e}");
    }

    #[test]
    fn a_type_that_names_nothing_is_an_error() {
        let e = Schema::parse("struct S { 1: required Missing m, }").unwrap_err();
        assert!(e.contains("Missing"), "{e}");
    }
}
