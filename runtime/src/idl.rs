//! Apache Thrift IDL of messages and services, generated from the Rust types: the `.thrift`
//! text other languages generate their code from.
//!
//! Fds are `typedef i32 fd (fdrpc.fd = "any")`; typed fds have a typedef of their own whose
//! annotation names their kind. Streams and sinks, which Thrift cannot express, are `void`
//! results or absent parameters with an `fdrpc.stream` / `fdrpc.sink` annotation and a comment.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

/// Words the Thrift compiler or one of its generators rejects as names: its keywords and the
/// reserved words of the languages it generates for (checked against `thrift` 0.17's `py` and
/// `cpp` generators).
const RESERVED: &[&str] = &[
    "BEGIN",
    "END",
    "__CLASS__",
    "__DIR__",
    "__FILE__",
    "__FUNCTION__",
    "__LINE__",
    "__METHOD__",
    "__NAMESPACE__",
    "abstract",
    "alias",
    "and",
    "args",
    "as",
    "assert",
    "async",
    "begin",
    "binary",
    "bool",
    "break",
    "byte",
    "case",
    "catch",
    "class",
    "clone",
    "const",
    "continue",
    "cpp_include",
    "cpp_type",
    "declare",
    "def",
    "default",
    "del",
    "delete",
    "do",
    "double",
    "dynamic",
    "elif",
    "else",
    "elseif",
    "elsif",
    "end",
    "enddeclare",
    "endfor",
    "endforeach",
    "endif",
    "endswitch",
    "endwhile",
    "ensure",
    "enum",
    "except",
    "exception",
    "exec",
    "extends",
    "false",
    "finally",
    "float",
    "for",
    "foreach",
    "from",
    "function",
    "global",
    "goto",
    "i16",
    "i32",
    "i64",
    "i8",
    "if",
    "implements",
    "import",
    "in",
    "include",
    "inline",
    "instanceof",
    "interface",
    "is",
    "lambda",
    "list",
    "map",
    "module",
    "namespace",
    "native",
    "new",
    "next",
    "nil",
    "not",
    "oneway",
    "optional",
    "or",
    "package",
    "pass",
    "print",
    "private",
    "protected",
    "public",
    "raise",
    "redo",
    "register",
    "required",
    "rescue",
    "retry",
    "return",
    "self",
    "senum",
    "service",
    "set",
    "sizeof",
    "slist",
    "static",
    "string",
    "struct",
    "super",
    "switch",
    "synchronized",
    "then",
    "this",
    "throw",
    "throws",
    "transient",
    "true",
    "try",
    "typedef",
    "undef",
    "union",
    "unless",
    "unsigned",
    "until",
    "use",
    "var",
    "virtual",
    "void",
    "volatile",
    "when",
    "while",
    "with",
    "xor",
    "xsd_all",
    "xsd_attrs",
    "xsd_nillable",
    "xsd_optional",
    "yield",
];

// A `const fn` cannot use `get`; every index is below the length the loop checks.
#[allow(clippy::indexing_slicing)]
const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `name` cannot be a name in Thrift IDL. Method names are on the wire, so the
/// service macro rejects reserved ones at compile time; other names are escaped.
#[allow(clippy::indexing_slicing)]
pub const fn is_reserved(name: &str) -> bool {
    let mut i = 0;
    while i < RESERVED.len() {
        if str_eq(RESERVED[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

/// `name`, or `name_` if it is reserved: field, parameter and enum value names are not on the
/// wire, so the IDL may spell them differently.
pub fn escape(name: &str) -> String {
    if is_reserved(name) {
        format!("{name}_")
    } else {
        name.to_owned()
    }
}

/// A field of a struct, union or exception, or a parameter of a function.
#[derive(Debug, Clone)]
pub struct IdlField {
    /// Thrift field id.
    pub id: i16,
    /// Field name.
    pub name: String,
    /// Thrift type expression.
    pub ty: String,
    /// `optional` on the wire.
    pub optional: bool,
}

impl IdlField {
    /// A field.
    pub fn new(id: i16, name: impl Into<String>, ty: String, optional: bool) -> Self {
        IdlField {
            id,
            name: name.into(),
            ty,
            optional,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Struct,
    Union,
}

#[derive(Debug)]
enum Def {
    Fields(Kind, Vec<IdlField>),
    Enum(Vec<(String, i32)>),
}

/// A function of a service.
#[derive(Debug, Clone, Default)]
pub struct IdlFunction {
    /// Wire name.
    pub name: String,
    /// Documentation, one line per element.
    pub doc: Vec<String>,
    /// `oneway`.
    pub oneway: bool,
    /// The return type, `void` for none.
    pub returns: String,
    /// Parameters (on the wire).
    pub params: Vec<IdlField>,
    /// The declared exception type, as field 1 of `throws`.
    pub throws: Option<String>,
    /// Extra annotations, `key = "value"` each.
    pub annotations: Vec<(String, String)>,
    /// A comment added after the docs.
    pub note: Option<String>,
}

/// Collects definitions while types describe themselves, and renders them in dependency
/// order.
#[derive(Debug, Default)]
pub struct Idl {
    order: Vec<String>,
    defs: HashMap<String, Def>,
    started: HashSet<String>,
    exceptions: HashSet<String>,
    typedefs: BTreeMap<String, String>,
    /// Services by name, with their docs and functions, rendered last.
    services: Vec<(String, Vec<String>, Vec<IdlFunction>)>,
}

impl Idl {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares `typedef i32 name (annotations)` once and returns `name`.
    pub fn fd_typedef(&mut self, name: &str, annotations: &str) -> String {
        self.typedefs
            .entry(name.to_owned())
            .or_insert_with(|| format!("typedef i32 {name} ({annotations})"));
        name.to_owned()
    }

    /// Starts the definition of `name`: `true` if the caller should describe it now (it is
    /// neither described nor being described).
    pub fn begin(&mut self, name: &str) -> bool {
        self.started.insert(name.to_owned())
    }

    /// Defines a struct.
    pub fn define_struct(&mut self, name: &str, fields: Vec<IdlField>) {
        self.define(name, Def::Fields(Kind::Struct, fields));
    }

    /// Defines a union.
    pub fn define_union(&mut self, name: &str, fields: Vec<IdlField>) {
        self.define(name, Def::Fields(Kind::Union, fields));
    }

    /// Defines an enum.
    pub fn define_enum(&mut self, name: &str, values: Vec<(String, i32)>) {
        self.define(name, Def::Enum(values));
    }

    fn define(&mut self, name: &str, def: Def) {
        if self.defs.insert(name.to_owned(), def).is_none() {
            self.order.push(name.to_owned());
        }
    }

    /// Marks a struct or union as used in `throws`: it is rendered as an `exception`.
    pub fn mark_exception(&mut self, name: &str) {
        self.exceptions.insert(name.to_owned());
    }

    /// Adds a service.
    pub fn service(&mut self, name: &str, doc: &[String], functions: &[IdlFunction]) {
        self.services
            .push((name.to_owned(), doc.to_vec(), functions.to_vec()));
    }

    /// A field, parameter or enum value name as the document spells it: `name_` if `name` is
    /// a Thrift keyword, or the name of a type the document defines (C++ code generated from
    /// `2: fd fd` does not compile: the member hides the type).
    fn name_of(&self, name: &str) -> String {
        let taken = self.typedefs.contains_key(name) || self.defs.contains_key(name);
        if taken && !is_reserved(name) {
            format!("{name}_")
        } else {
            escape(name)
        }
    }

    fn render_service(
        &self,
        out: &mut String,
        name: &str,
        doc: &[String],
        functions: &[IdlFunction],
    ) {
        doc_comment(out, "", doc, None);
        let _ = writeln!(out, "service {name} {{");
        for (i, f) in functions.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            doc_comment(out, "  ", &f.doc, f.note.as_deref());
            let params: Vec<String> = f
                .params
                .iter()
                .map(|p| format!("{}: {} {}", p.id, p.ty, self.name_of(&p.name)))
                .collect();
            let _ = write!(
                out,
                "  {}{} {}({})",
                if f.oneway { "oneway " } else { "" },
                f.returns,
                f.name,
                params.join(", ")
            );
            if let Some(t) = &f.throws {
                let _ = write!(out, " throws (1: {t} error)");
            }
            if !f.annotations.is_empty() {
                let a: Vec<String> = f
                    .annotations
                    .iter()
                    .map(|(k, v)| format!("{k} = \"{v}\""))
                    .collect();
                let _ = write!(out, " ({})", a.join(", "));
            }
            out.push_str(",\n");
        }
        out.push_str("}\n");
    }

    /// The whole document.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "// Apache Thrift IDL generated by fdrpc. Fds travel out of band (SCM_RIGHTS); an fd\n\
             // field holds its index in the frame's fd table (docs/PROTOCOL.md).\n\n",
        );
        for t in self.typedefs.values() {
            out.push_str(t);
            out.push('\n');
        }
        if !self.typedefs.is_empty() {
            out.push('\n');
        }
        for name in &self.order {
            let Some(def) = self.defs.get(name) else {
                continue;
            };
            match def {
                Def::Enum(values) => {
                    let _ = writeln!(out, "enum {name} {{");
                    for (v, n) in values {
                        let _ = writeln!(out, "  {} = {n},", escape(v));
                    }
                }
                Def::Fields(kind, fields) => {
                    let exception = self.exceptions.contains(name);
                    let keyword = match (exception, kind) {
                        (true, _) => "exception",
                        (false, Kind::Struct) => "struct",
                        (false, Kind::Union) => "union",
                    };
                    let _ = writeln!(out, "{keyword} {name} {{");
                    for f in fields {
                        let req = match (kind, f.optional) {
                            (Kind::Union, _) if exception => "optional ",
                            (Kind::Union, _) => "",
                            (Kind::Struct, true) => "optional ",
                            (Kind::Struct, false) => "required ",
                        };
                        let _ =
                            writeln!(out, "  {}: {req}{} {},", f.id, f.ty, self.name_of(&f.name));
                    }
                }
            }
            out.push_str("}\n\n");
        }
        for (name, doc, functions) in &self.services {
            self.render_service(&mut out, name, doc, functions);
            out.push('\n');
        }
        while out.ends_with("\n\n") {
            out.pop();
        }
        out
    }
}

fn doc_comment(out: &mut String, indent: &str, doc: &[String], note: Option<&str>) {
    let lines: Vec<&str> = doc.iter().map(|l| l.trim()).chain(note).collect();
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}/**");
    for l in lines {
        // `*/` would end the comment early.
        let l = l.replace("*/", "* /");
        if l.is_empty() {
            let _ = writeln!(out, "{indent} *");
        } else {
            let _ = writeln!(out, "{indent} * {l}");
        }
    }
    let _ = writeln!(out, "{indent} */");
}

/// The wire name of the introspection method every fdrpc server answers: no arguments, its
/// result the Thrift IDL of the services served. Method names starting with `_fdrpc` are
/// reserved.
pub const INTROSPECTION_METHOD: &str = "_fdrpc_idl";

/// The IDL entry of the introspection method every server answers (used by generated code).
pub fn introspection_function() -> IdlFunction {
    IdlFunction {
        name: INTROSPECTION_METHOD.into(),
        doc: vec!["fdrpc introspection: the Thrift IDL of the services this server serves.".into()],
        returns: "string".into(),
        ..Default::default()
    }
}

/// What every generated client and server of a service knows about it: its Thrift name and
/// its IDL. Implemented by `#[fdrpc::service]` for `{Trait}Client`,
/// `{Trait}BlockingClient` and `{Trait}Server<T>`.
///
/// The generated clients also have an inherent `idl()`, unless the service has a method of
/// that name; this trait reaches the IDL either way.
pub trait Described {
    /// The Thrift service name.
    const NAME: &'static str;

    /// The Apache Thrift IDL of the service and every type it uses.
    fn idl() -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_keywords_or_types_get_an_underscore() {
        let mut idl = Idl::new();
        let fd = idl.fd_typedef("fd", "fdrpc.fd = \"any\"");
        idl.begin("Msg");
        idl.define_struct(
            "Msg",
            vec![
                IdlField::new(1, "fd", fd.clone(), false),
                IdlField::new(2, "Msg", "i32".into(), false),
                IdlField::new(3, "list", "i32".into(), false),
                IdlField::new(4, "label", "string".into(), false),
            ],
        );
        idl.service(
            "S",
            &[],
            &[IdlFunction {
                name: "put".into(),
                returns: "void".into(),
                params: vec![
                    IdlField::new(1, "fd", fd, false),
                    IdlField::new(2, "key", "string".into(), false),
                ],
                ..Default::default()
            }],
        );
        let text = idl.render();
        assert!(text.contains("  1: required fd fd_,\n"), "{text}");
        assert!(text.contains("  2: required i32 Msg_,\n"), "{text}");
        assert!(text.contains("  3: required i32 list_,\n"), "{text}");
        assert!(text.contains("  4: required string label,\n"), "{text}");
        assert!(
            text.contains("void put(1: fd fd_, 2: string key)"),
            "{text}"
        );
    }
}
