//! Parsing of `#[fdrpc(...)]` attributes. Parsers record errors in the [`Ctxt`] and return
//! what they could read, so every bad attribute is reported in one pass.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, LitInt, LitStr, Path};

use crate::ctxt::Ctxt;
use crate::symbol::*;

/// Where an attribute sits; decides which keys are allowed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    Container,
    Field,
    Variant,
    Method,
    Param,
}

impl Position {
    fn allowed(self) -> &'static [&'static str] {
        match self {
            Position::Container => &[RENAME, CRATE],
            Position::Field | Position::Param => &[ID, RENAME, BINARY, FD],
            Position::Variant => &[ID, RENAME],
            Position::Method => &[RENAME, NAME, ONEWAY],
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Position::Container => "a struct or enum",
            Position::Field => "a field",
            Position::Variant => "an enum variant",
            Position::Method => "a service method",
            Position::Param => "a method parameter",
        }
    }

    /// Where a key does belong, for the error message.
    fn home_of(key: &str) -> Option<&'static str> {
        Some(match key {
            ID => "a field, a union variant or a method parameter",
            BINARY | FD => "a field or a method parameter",
            RENAME => "a type, a field, a variant, a parameter or a method",
            CRATE => "the struct or enum",
            NAME | ONEWAY => "a service method",
            _ => return None,
        })
    }
}

/// A key that may be given once; a second one is an error at its span.
pub(crate) struct Once<T> {
    name: &'static str,
    value: Option<(Span, T)>,
}

impl<T> Once<T> {
    fn new(name: &'static str) -> Self {
        Once { name, value: None }
    }

    /// Records `value` given at `span` by the key at `key_span`.
    fn set(&mut self, cx: &Ctxt, key_span: Span, span: Span, value: T) {
        if self.value.is_some() {
            cx.syn_error(syn::Error::new(
                key_span,
                format!("duplicate fdrpc attribute `{}`", self.name),
            ));
        } else {
            self.value = Some((span, value));
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(_, v)| v)
    }

    pub(crate) fn span(&self) -> Option<Span> {
        self.value.as_ref().map(|(s, _)| *s)
    }
}

/// Everything `#[fdrpc(...)]` can say, whichever position it is in; keys not allowed in a
/// position were already reported.
pub(crate) struct Attrs {
    pub(crate) id: Once<i64>,
    pub(crate) rename: Once<String>,
    pub(crate) binary: Once<()>,
    pub(crate) fd: Once<()>,
    pub(crate) krate: Once<Path>,
    pub(crate) name: Once<String>,
    pub(crate) oneway: Once<()>,
}

impl Attrs {
    pub(crate) fn from_syn(cx: &Ctxt, pos: Position, attrs: &[Attribute]) -> Attrs {
        let mut out = Attrs {
            id: Once::new(ID),
            rename: Once::new(RENAME),
            binary: Once::new(BINARY),
            fd: Once::new(FD),
            krate: Once::new(CRATE),
            name: Once::new(NAME),
            oneway: Once::new(ONEWAY),
        };
        for attr in attrs {
            if !attr.path().is_ident(FDRPC) {
                continue;
            }
            if let syn::Meta::Path(_) = attr.meta {
                cx.error_spanned_by(
                    attr,
                    "expected `#[fdrpc(...)]` with keys inside the parentheses",
                );
                continue;
            }
            let result = attr.parse_nested_meta(|meta| {
                let key = meta
                    .path
                    .get_ident()
                    .map(|i| i.to_string())
                    .unwrap_or_default();
                let span = meta.path.span();
                if !pos.allowed().contains(&key.as_str()) {
                    let msg = match Position::home_of(&key) {
                        Some(home) => format!(
                            "`#[fdrpc({key})]` is not allowed on {}; it belongs on {home}",
                            pos.noun()
                        ),
                        None => format!(
                            "unknown fdrpc attribute `{}`; expected one of {}",
                            meta.path.to_token_stream_string(),
                            list(pos.allowed())
                        ),
                    };
                    // Consume a value if there is one so parsing can go on.
                    if meta.input.peek(syn::Token![=]) {
                        let _: syn::Expr = meta.value()?.parse()?;
                    } else if meta.input.peek(syn::token::Paren) {
                        let _content;
                        syn::parenthesized!(_content in meta.input);
                    }
                    cx.syn_error(syn::Error::new(span, msg));
                    return Ok(());
                }
                match key.as_str() {
                    ID => {
                        let lit: syn::Expr = meta.value()?.parse()?;
                        match int_of(&lit) {
                            Some(v) => out.id.set(cx, span, lit.span(), v),
                            None => cx.error_spanned_by(
                                &lit,
                                "`#[fdrpc(id = ...)]` takes an integer literal, such as `id = 3`",
                            ),
                        }
                    }
                    RENAME => {
                        let s: LitStr = meta.value()?.parse()?;
                        let v = s.value();
                        if !is_thrift_identifier(&v) {
                            cx.error_spanned_by(
                                &s,
                                "`#[fdrpc(rename = ...)]` must be a Thrift identifier (letters, digits, `_`, `.`; not starting with a digit)",
                            );
                        }
                        out.rename.set(cx, span, s.span(), v);
                    }
                    NAME => {
                        let s: LitStr = meta.value()?.parse()?;
                        let v = s.value();
                        if !is_thrift_identifier(&v) {
                            cx.error_spanned_by(
                                &s,
                                "`#[fdrpc(name = ...)]` must be a Thrift identifier (letters, digits, `_`, `.`; not starting with a digit)",
                            );
                        }
                        out.name.set(cx, span, s.span(), v);
                    }
                    ONEWAY => out.oneway.set(cx, span, span, ()),
                    BINARY => out.binary.set(cx, span, span, ()),
                    FD => out.fd.set(cx, span, span, ()),
                    CRATE => {
                        let p: Path = meta.value()?.parse()?;
                        out.krate.set(cx, span, p.span(), p);
                    }
                    _ => unreachable!("allowed keys are handled above"),
                }
                Ok(())
            });
            if let Err(e) = result {
                cx.syn_error(e);
            }
        }
        if let (Some(_), Some(span)) = (out.rename.get(), out.name.span()) {
            cx.syn_error(syn::Error::new(
                span,
                "`#[fdrpc(name = ...)]` is another spelling of `#[fdrpc(rename = ...)]`; give one of them",
            ));
        }
        out
    }

    /// A method's wire name, if given (`rename`, or its alias `name`), and where.
    pub(crate) fn wire_name(&self) -> Option<(&String, Span)> {
        let given = if self.rename.get().is_some() {
            &self.rename
        } else {
            &self.name
        };
        Some((given.get()?, given.span()?))
    }
}

trait PathString {
    fn to_token_stream_string(&self) -> String;
}

impl PathString for Path {
    fn to_token_stream_string(&self) -> String {
        quote::ToTokens::to_token_stream(self)
            .to_string()
            .replace(' ', "")
    }
}

fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value of an integer literal, possibly negated.
pub(crate) fn int_of(expr: &syn::Expr) -> Option<i64> {
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => {
            // Beyond i64: reported as out of range by the caller.
            Some(parse_int(i).map_or(i64::MAX, |v| v as i64))
        }
        syn::Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            expr,
            ..
        }) => int_of(expr).map(|v| v.checked_neg().unwrap_or(i64::MIN)),
        syn::Expr::Group(g) => int_of(&g.expr),
        syn::Expr::Paren(p) => int_of(&p.expr),
        _ => None,
    }
}

fn parse_int(lit: &LitInt) -> Option<i128> {
    lit.base10_parse::<i128>()
        .ok()
        .filter(|v| *v <= i64::MAX as i128)
}

/// Whether `s` is a valid Thrift identifier.
pub(crate) fn is_thrift_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_literals_with_signs_parens_and_overflow() {
        let int = |s: &str| int_of(&syn::parse_str::<syn::Expr>(s).unwrap());
        assert_eq!(int("3"), Some(3));
        assert_eq!(int("-3"), Some(-3));
        assert_eq!(int("(7)"), Some(7));
        assert_eq!(
            int("99999999999999999999"),
            Some(i64::MAX),
            "beyond i64: out of range"
        );
        assert_eq!(int("\"3\""), None);
        assert_eq!(int("N"), None);
    }

    #[test]
    fn a_macros_expression_group_is_looked_through() {
        // What `$id:expr` becomes inside a `macro_rules!`: an invisible group.
        let grouped = syn::Expr::Group(syn::ExprGroup {
            attrs: Vec::new(),
            group_token: Default::default(),
            expr: Box::new(syn::parse_str("-5").unwrap()),
        });
        assert_eq!(int_of(&grouped), Some(-5));
    }

    #[test]
    fn a_misplaced_key_says_where_it_belongs() {
        let cx = Ctxt::new();
        let attrs: Vec<Attribute> =
            vec![syn::parse_quote!(#[fdrpc(crate = ::fdrpc, oneway, name = "x", colour)])];
        Attrs::from_syn(&cx, Position::Field, &attrs);
        let errors: Vec<String> = cx
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errors,
            [
                "`#[fdrpc(crate)]` is not allowed on a field; it belongs on the struct or enum",
                "`#[fdrpc(oneway)]` is not allowed on a field; it belongs on a service method",
                "`#[fdrpc(name)]` is not allowed on a field; it belongs on a service method",
                "unknown fdrpc attribute `colour`; expected one of `id`, `rename`, `binary`, `fd`",
            ]
        );
    }

    #[test]
    fn oneway_is_a_methods_key() {
        let cx = Ctxt::new();
        let a: Vec<Attribute> = vec![syn::parse_quote!(#[fdrpc(oneway)])];
        let parsed = Attrs::from_syn(&cx, Position::Method, &a);
        assert!(parsed.oneway.get().is_some());
        cx.check().unwrap();
    }

    #[test]
    fn thrift_identifiers() {
        for ok in ["a", "_x", "Broker", "a.b_c9"] {
            assert!(is_thrift_identifier(ok), "{ok}");
        }
        for bad in ["", "9lives", "a-b", "é", "a b"] {
            assert!(!is_thrift_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn every_key_of_a_position_is_reported_at_once() {
        let cx = Ctxt::new();
        let attrs: Vec<Attribute> = vec![
            syn::parse_quote!(#[fdrpc(id = 1, colour)]),
            syn::parse_quote!(#[fdrpc(id = 2, oneway)]),
        ];
        let parsed = Attrs::from_syn(&cx, Position::Field, &attrs);
        assert_eq!(parsed.id.get(), Some(&1), "the first id is kept");
        let errors = cx.check().unwrap_err().into_iter().count();
        assert_eq!(
            errors, 3,
            "unknown `colour`, duplicate `id`, misplaced `oneway`"
        );
    }

    #[test]
    fn a_method_takes_rename_or_its_alias_name() {
        let cx = Ctxt::new();
        let a: Vec<Attribute> = vec![syn::parse_quote!(#[fdrpc(name = "open_file")])];
        let parsed = Attrs::from_syn(&cx, Position::Method, &a);
        assert_eq!(
            parsed.wire_name().map(|(n, _)| n.as_str()),
            Some("open_file")
        );
        cx.check().unwrap();
        let cx = Ctxt::new();
        let both: Vec<Attribute> = vec![syn::parse_quote!(#[fdrpc(rename = "a", name = "b")])];
        let parsed = Attrs::from_syn(&cx, Position::Method, &both);
        assert_eq!(parsed.wire_name().map(|(n, _)| n.as_str()), Some("a"));
        assert!(cx.check().is_err(), "both given is an error");
    }
}
