//! Rules that involve several fields, or a field's type as written. Each rule is one
//! function; each error points at the token to fix.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::Type;

use crate::ast::{Container, Data};
use crate::ctxt::Ctxt;

pub(crate) fn check(cx: &Ctxt, cont: &Container<'_>) {
    match &cont.data {
        Data::Struct(fields) => {
            let ids = fields
                .iter()
                .map(|f| (f.id, f.id_span, f.member.to_string()));
            check_ids(cx, ids, "field");
            check_names(
                cx,
                fields.iter().map(|f| (f.name.as_str(), f.member.span())),
            );
            for f in fields {
                check_type(cx, f.ty);
                check_binary_fd(cx, f.binary, f.fd);
            }
        }
        Data::Union(variants) => {
            let ids = variants
                .iter()
                .map(|v| (v.id, v.id_span, v.ident.to_string()));
            check_ids(cx, ids, "variant");
            check_names(
                cx,
                variants.iter().map(|v| (v.name.as_str(), v.ident.span())),
            );
            for v in variants {
                if let Some(ty) = v.ty {
                    check_type(cx, ty);
                }
            }
        }
        Data::Enum(values) => {
            check_names(cx, values.iter().map(|v| (v.name.as_str(), v.ident.span())));
        }
    }
}

/// Thrift field ids are 1..=32767 and unique within a struct: they are what the wire and
/// compatibility rest on.
fn check_ids(cx: &Ctxt, ids: impl Iterator<Item = (i64, Span, String)>, what: &str) {
    let mut seen: HashMap<i64, String> = HashMap::new();
    for (id, span, member) in ids {
        if !(1..=i16::MAX as i64).contains(&id) {
            cx.syn_error(syn::Error::new(
                span,
                format!("{what} id {id} is out of range; Thrift field ids are 1 to 32767"),
            ));
        } else if let Some(first) = seen.get(&id) {
            cx.syn_error(syn::Error::new(
                span,
                format!(
                    "duplicate {what} id {id} (`{first}` has it too); give each {what} its own `#[fdrpc(id = N)]`"
                ),
            ));
        } else {
            seen.insert(id, member);
        }
    }
}

/// Wire names are unique, or the exported IDL would not compile.
fn check_names<'n>(cx: &Ctxt, names: impl Iterator<Item = (&'n str, Span)>) {
    let mut seen = HashMap::new();
    for (name, span) in names {
        if seen.insert(name, span).is_some() {
            cx.syn_error(syn::Error::new(
                span,
                format!("duplicate wire name `{name}`; change one `#[fdrpc(rename = ...)]`"),
            ));
        }
    }
}

fn check_binary_fd(cx: &Ctxt, binary: bool, fd: Option<Span>) {
    if let (true, Some(span)) = (binary, fd) {
        cx.syn_error(syn::Error::new(
            span,
            "`#[fdrpc(fd)]` and `#[fdrpc(binary)]` exclude each other; a field is bytes or descriptors",
        ));
    }
}

/// Types that look like descriptors but cannot carry ownership to another process get an
/// error that says what to use instead (a trait error would only say "not a wire type").
pub(crate) fn check_type(cx: &Ctxt, ty: &Type) {
    match ty {
        Type::Reference(r) => cx.error_spanned_by(
            r,
            "a reference cannot travel in an fdrpc message; use an owned type (`OwnedFd` rather than `&OwnedFd`, `String` rather than `&str`)",
        ),
        Type::Ptr(p) => cx.error_spanned_by(
            p,
            "a raw pointer cannot travel in an fdrpc message; use an owned type",
        ),
        Type::Paren(p) => check_type(cx, &p.elem),
        Type::Group(g) => check_type(cx, &g.elem),
        Type::Slice(s) => check_type(cx, &s.elem),
        Type::Array(a) => check_type(cx, &a.elem),
        Type::Tuple(t) => t.elems.iter().for_each(|e| check_type(cx, e)),
        Type::Path(p) => {
            let Some(last) = p.path.segments.last() else {
                return;
            };
            let name = last.ident.to_string();
            match name.as_str() {
                "RawFd" => cx.error_spanned_by(
                    ty,
                    "`RawFd` is a bare descriptor number that owns nothing; use `OwnedFd` so ownership moves with the message",
                ),
                "BorrowedFd" => cx.error_spanned_by(
                    ty,
                    "`BorrowedFd` cannot be received: nothing would own the descriptor; use `OwnedFd`",
                ),
                "Rc" | "Arc" => cx.error_spanned_by(
                    ty,
                    format!(
                        "`{name}<..>` shares ownership, which cannot move to another process; use the owned type (`OwnedFd`; `try_clone` it to keep a copy)"
                    ),
                ),
                _ => {
                    if let syn::PathArguments::AngleBracketed(args) = &last.arguments {
                        for arg in &args.args {
                            if let syn::GenericArgument::Type(t) = arg {
                                check_type(cx, t);
                            }
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn errors(run: impl FnOnce(&Ctxt)) -> Vec<String> {
        let cx = Ctxt::new();
        run(&cx);
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn type_errors(ty: &str) -> Vec<String> {
        let ty: Type = syn::parse_str(ty).unwrap();
        errors(|cx| check_type(cx, &ty))
    }

    #[test]
    fn descriptors_that_own_nothing_are_found_inside_any_type() {
        for (ty, what) in [
            ("*const u8", "a raw pointer cannot travel"),
            ("(&OwnedFd)", "a reference cannot travel"),
            ("[RawFd]", "`RawFd` is a bare descriptor number"),
            (
                "[BorrowedFd<'static>; 2]",
                "`BorrowedFd` cannot be received",
            ),
            ("(i32, Arc<OwnedFd>)", "`Arc<..>` shares ownership"),
            ("Vec<Option<Rc<File>>>", "`Rc<..>` shares ownership"),
        ] {
            let errors = type_errors(ty);
            assert!(
                matches!(&errors[..], [one] if one.contains(what)),
                "{ty}: {errors:?}"
            );
        }
        let grouped = Type::Group(syn::TypeGroup {
            attrs: Vec::new(),
            group_token: Default::default(),
            elem: Box::new(syn::parse_str("RawFd").unwrap()),
        });
        assert_eq!(errors(|cx| check_type(cx, &grouped)).len(), 1);
        for fine in ["OwnedFd", "Vec<(i32, OwnedFd)>", "[u8; 4]", "Option<File>"] {
            assert_eq!(type_errors(fine), Vec::<String>::new(), "{fine}");
        }
    }

    #[test]
    fn wire_names_are_unique() {
        let span = Span::call_site();
        let found =
            errors(|cx| check_names(cx, [("a", span), ("b", span), ("a", span)].into_iter()));
        assert_eq!(
            found,
            ["duplicate wire name `a`; change one `#[fdrpc(rename = ...)]`"]
        );
    }

    #[test]
    fn a_field_is_bytes_or_descriptors() {
        let span = Some(Span::call_site());
        assert_eq!(errors(|cx| check_binary_fd(cx, true, span)).len(), 1);
        assert!(errors(|cx| check_binary_fd(cx, false, span)).is_empty());
        assert!(errors(|cx| check_binary_fd(cx, true, None)).is_empty());
    }
}
