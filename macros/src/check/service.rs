//! The rules a service trait and its methods follow. Each rule is one function, with a
//! comment saying why it exists; each error points at the token to fix.

use std::collections::HashMap;

use crate::ast::service::{ContextKind, Method, Param, Service, is_unit};
use crate::check::check_type;
use crate::ctxt::Ctxt;
use crate::expand::service::{Clash, client_item};
use crate::symbol::FDRPC;

pub(crate) fn check(cx: &Ctxt, service: &Service<'_>) {
    check_trait_not_generic(cx, service);
    check_trait_not_unsafe(cx, service);
    check_no_fdrpc_attr_on_trait(cx, service);
    check_only_methods(cx, service);
    check_unique_wire_names(cx, service);
    for m in &service.methods {
        check_async(cx, m);
        check_plain_fn(cx, m);
        check_not_generic(cx, m);
        check_no_body(cx, m);
        check_receiver(cx, m);
        check_params_are_names(cx, m);
        check_param_attrs(cx, m);
        check_context(cx, m);
        check_stream_params(cx, m);
        check_oneway(cx, m);
        check_client_names(cx, m);
        check_reserved_prefix(cx, m);
        check_result_alias(cx, m);
        check_wire_types(cx, m);
    }
}

/// The wire needs one concrete signature per method.
fn check_trait_not_generic(cx: &Ctxt, service: &Service<'_>) {
    let g = &service.item.generics;
    if g.lt_token.is_some() || g.where_clause.is_some() {
        cx.error_spanned_by(
            g,
            "a service trait cannot be generic; the wire needs one concrete signature per method",
        );
    }
}

/// Nothing about serving a call is unsafe to implement.
fn check_trait_not_unsafe(cx: &Ctxt, service: &Service<'_>) {
    if let Some(unsafety) = service.item.unsafety {
        cx.error_spanned_by(unsafety, "a service trait cannot be `unsafe`");
    }
}

/// Service options live in the attribute that makes the service, so they are read once.
fn check_no_fdrpc_attr_on_trait(cx: &Ctxt, service: &Service<'_>) {
    for attr in &service.item.attrs {
        if attr.path().is_ident(FDRPC) {
            cx.error_spanned_by(
                attr,
                "put service options in `#[fdrpc::service(...)]` itself (`crate = ...`, `rename = \"...\"`)",
            );
        }
    }
}

/// The trait is rewritten, and only methods have a meaning on the wire.
fn check_only_methods(cx: &Ctxt, service: &Service<'_>) {
    for item in &service.other_items {
        cx.error_spanned_by(
            item,
            "a service trait holds only methods; move constants and types out of it",
        );
    }
}

/// Wire names are what calls are routed by.
fn check_unique_wire_names(cx: &Ctxt, service: &Service<'_>) {
    let mut seen: HashMap<&str, &syn::Ident> = HashMap::new();
    for m in &service.methods {
        if let Some(first) = seen.insert(m.name.as_str(), m.ident) {
            cx.syn_error(syn::Error::new(
                m.name_span,
                format!(
                    "method `{first}` already has the wire name `{}`; give this one another `#[fdrpc(rename = \"...\")]`",
                    m.name
                ),
            ));
        }
    }
}

/// The server awaits every handler, and the client methods are async.
fn check_async(cx: &Ctxt, m: &Method<'_>) {
    if m.item.sig.asyncness.is_none() {
        cx.error_spanned_by(
            m.item.sig.fn_token,
            "service methods must be `async fn`; the server awaits every handler",
        );
    }
}

/// A handler is an ordinary function: no `const`, `unsafe`, ABI or variadics.
fn check_plain_fn(cx: &Ctxt, m: &Method<'_>) {
    let sig = &m.item.sig;
    if let Some(c) = &sig.constness {
        cx.error_spanned_by(c, "a service method cannot be `const`");
    }
    match &sig.safety {
        syn::Safety::Unsafe(u) => cx.error_spanned_by(u, "a service method cannot be `unsafe`"),
        syn::Safety::Safe(s) => cx.error_spanned_by(s, "a service method cannot be `safe`"),
        _ => {}
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(abi, "a service method cannot have an ABI");
    }
    if let Some(v) = &sig.variadic {
        cx.error_spanned_by(v, "a service method cannot be variadic");
    }
}

/// A one-argument `Result` alias (`std::io::Result<T>`, `anyhow::Result<T>`) hides the error
/// type the macro must see to declare it; and `io::Error` cannot travel anyway.
fn check_result_alias(cx: &Ctxt, m: &Method<'_>) {
    let Some(syn::Type::Path(p)) = m.ret.written else {
        return;
    };
    let Some(seg) = p.path.segments.last() else {
        return;
    };
    let syn::PathArguments::AngleBracketed(args) = &seg.arguments else {
        return;
    };
    let types = args
        .args
        .iter()
        .filter(|a| matches!(a, syn::GenericArgument::Type(_)))
        .count();
    if seg.ident == "Result" && types == 1 {
        cx.error_spanned_by(
            p,
            "the error type of a method must derive `fdrpc::Message`, and this `Result` hides it \
             (`std::io::Result<T>` is `Result<T, std::io::Error>`, which cannot travel); \
             write `Result<T, E>` with an `E` that derives `fdrpc::Message`",
        );
    }
}

/// The wire needs one concrete signature.
fn check_not_generic(cx: &Ctxt, m: &Method<'_>) {
    let g = &m.item.sig.generics;
    if !g.params.is_empty() || g.where_clause.is_some() {
        cx.error_spanned_by(
            g,
            "a service method cannot be generic; the wire needs one concrete signature",
        );
    }
}

/// The trait is the contract; its implementation is the user's type.
fn check_no_body(cx: &Ctxt, m: &Method<'_>) {
    if let Some(body) = &m.item.default {
        cx.error_spanned_by(
            body,
            "a service method has no body in the trait; implement it in `impl Trait for YourType`",
        );
    }
}

/// Calls run concurrently on a shared service.
fn check_receiver(cx: &Ctxt, m: &Method<'_>) {
    match m.receiver {
        Some(r)
            if !matches!(r.kind, syn::ReceiverKind::Reference(_, _, None))
                || r.mutability.is_some() =>
        {
            cx.error_spanned_by(
                r,
                "service methods take `&self`: calls run concurrently, so keep mutable state behind a lock",
            );
        }
        Some(_) => {}
        None => cx.error_spanned_by(
            m.ident,
            "service methods take `&self` as their first parameter",
        ),
    }
}

/// Parameters become fields of the call's arguments struct, which need names.
fn check_params_are_names(cx: &Ctxt, m: &Method<'_>) {
    for p in &m.params {
        if !matches!(p.pat, syn::Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none()) {
            cx.error_spanned_by(
                p.pat,
                "service method parameters must be plain names; they become the fields of the call's arguments struct",
            );
        }
    }
}

/// Only what describes a field makes sense on a parameter; the context and the sink are not
/// fields at all.
fn check_param_attrs(cx: &Ctxt, m: &Method<'_>) {
    for p in &m.params {
        for a in &p.other_attrs {
            cx.error_spanned_by(
                a,
                "only `#[fdrpc(...)]` attributes are allowed on service method parameters",
            );
        }
        let Some(first) = p.fdrpc_attrs.first() else {
            continue;
        };
        if p.context.is_some() {
            cx.error_spanned_by(
                first,
                "the context is not on the wire; it takes no `#[fdrpc(...)]`",
            );
        } else if p.stream.is_some() {
            cx.error_spanned_by(
                first,
                "a stream parameter is not in the arguments struct; it takes no `#[fdrpc(...)]`",
            );
        }
    }
}

/// The context is lent to the handler for the call, once.
fn check_context(cx: &Ctxt, m: &Method<'_>) {
    let mut seen = false;
    for p in m.params.iter().filter(|p| p.context.is_some()) {
        match p.context {
            Some(ContextKind::Owned) => {
                cx.error_spanned_by(p.ty, "take the context by reference: `cx: &fdrpc::Context`")
            }
            Some(ContextKind::Mutable) => cx.error_spanned_by(
                p.ty,
                "take the context by shared reference: `cx: &fdrpc::Context`",
            ),
            _ if seen => cx.error_spanned_by(
                p.ty,
                "a method takes the context at most once; remove this parameter",
            ),
            _ => seen = true,
        }
    }
}

/// A call carries one stream of its own; both directions need a reply to run over.
fn check_stream_params(cx: &Ctxt, m: &Method<'_>) {
    for p in m.params.iter().filter(|p| p.stream.is_some()).skip(1) {
        cx.error_spanned_by(p.ty, "a method takes at most one stream parameter");
    }
}

/// A oneway call gets no reply: nothing to return, and no stream to run over it.
fn check_oneway(cx: &Ctxt, m: &Method<'_>) {
    for dup in m.oneway.iter().skip(1) {
        cx.syn_error(syn::Error::new(*dup, "`#[oneway]` given twice"));
    }
    if !m.is_oneway() {
        return;
    }
    if let Some(ty) = m.ret.written.filter(|t| !is_unit(t)) {
        cx.error_spanned_by(
            ty,
            "a `#[oneway]` method sends no reply, so it returns nothing; remove the return type or `#[oneway]`",
        );
    }
    if let Some(p) = m.sink() {
        cx.error_spanned_by(
            p.ty,
            "a `#[oneway]` method cannot take a stream: a sink needs a reply; drop `#[oneway]`",
        );
    }
}

/// A method of the generated clients with the same name would clash with the service's. The
/// names come from the generator's own list: where the client cannot do without its item, the
/// method must be renamed; where it can, the service's method wins.
fn check_client_names(cx: &Ctxt, m: &Method<'_>) {
    let name = syn::ext::IdentExt::unraw(m.ident).to_string();
    if let Some(Clash::Refuse(what)) = client_item(&name) {
        cx.error_spanned_by(
            m.ident,
            format!(
                "`{name}` clashes with the generated clients' `{name}` ({what}); rename the method and keep its wire name with `#[fdrpc(rename = \"{}\")]`",
                m.name
            ),
        );
    }
}

/// `_fdrpc` names are the protocol's own (the introspection method).
fn check_reserved_prefix(cx: &Ctxt, m: &Method<'_>) {
    if m.ident.to_string().starts_with("__fdrpc") || m.name.starts_with("_fdrpc") {
        cx.error_spanned_by(
            m.ident,
            "wire names starting with `_fdrpc` are reserved (`_fdrpc_idl` is the introspection method)",
        );
    }
}

/// Types written where a wire type belongs get the errors that name the fix.
fn check_wire_types(cx: &Ctxt, m: &Method<'_>) {
    m.wire_params()
        .for_each(|p: &Param<'_>| check_type(cx, p.ty));
    for st in m
        .sink()
        .and_then(|p| p.stream)
        .into_iter()
        .chain(m.ret.stream)
    {
        check_type(cx, st.item);
        if let Some(e) = st.error {
            check_type(cx, e);
        }
    }
    if let Some(ty) = m.ret.value {
        check_type(cx, ty);
    }
    if let Some(ty) = m.ret.exception {
        check_type(cx, ty);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ast::service::ServiceOptions;

    /// The errors the checks find in the trait `src`, in order.
    fn errors(src: &str) -> Vec<String> {
        let item: syn::ItemTrait = syn::parse_str(src).unwrap();
        let cx = Ctxt::new();
        let service = Service::from_syn(&cx, ServiceOptions::default(), &item);
        check(&cx, &service);
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn says(src: &str, what: &str) {
        let errors = errors(src);
        assert!(
            matches!(&errors[..], [one] if one.contains(what)),
            "{src}: expected one error saying {what:?}, got {errors:?}"
        );
    }

    #[test]
    fn a_plain_service_passes() {
        let ok = "trait S { async fn a(&self, n: i32, cx: &fdrpc::Context) -> i32; }";
        assert_eq!(errors(ok), Vec::<String>::new());
    }

    #[test]
    fn the_trait_is_concrete_safe_and_only_methods() {
        says("trait S<T> { async fn a(&self); }", "cannot be generic");
        says(
            "trait S where Self: Sized { async fn a(&self); }",
            "cannot be generic",
        );
        says(
            "unsafe trait S { async fn a(&self); }",
            "cannot be `unsafe`",
        );
        says(
            "trait S { const X: i32; async fn a(&self); }",
            "holds only methods",
        );
    }

    #[test]
    fn a_method_is_an_ordinary_function() {
        says("trait S { const async fn a(&self); }", "cannot be `const`");
        says("trait S { fn a(&self); }", "must be `async fn`");
        let both = errors("trait S { async unsafe fn a(&self); }");
        assert_eq!(both, ["a service method cannot be `unsafe`"]);
        says(
            "trait S { async extern \"C\" fn a(&self); }",
            "cannot have an ABI",
        );
    }

    #[test]
    fn parameters_take_only_what_describes_a_field() {
        says(
            "trait S { async fn a(&self, #[doc = \"x\"] n: i32); }",
            "only `#[fdrpc(...)]` attributes",
        );
        says(
            "trait S { async fn a(&self, #[fdrpc(id = 2)] cx: &fdrpc::Context); }",
            "the context is not on the wire",
        );
        says(
            "trait S { async fn a(&self, #[fdrpc(id = 2)] s: fdrpc::Stream<i32>); }",
            "a stream parameter is not in the arguments struct",
        );
    }

    #[test]
    fn the_context_is_taken_by_shared_reference_once() {
        says(
            "trait S { async fn a(&self, cx: &mut fdrpc::Context); }",
            "by shared reference",
        );
        says(
            "trait S { async fn a(&self, cx: fdrpc::Context); }",
            "by reference",
        );
        says(
            "trait S { async fn a(&self, a: &fdrpc::Context, b: &fdrpc::Context); }",
            "at most once",
        );
    }

    #[test]
    fn the_protocols_own_names_are_reserved() {
        says("trait S { async fn __fdrpc_x(&self); }", "are reserved");
        says(
            "trait S { #[fdrpc(rename = \"_fdrpc_idl\")] async fn x(&self); }",
            "are reserved",
        );
        assert_eq!(
            errors("trait S { async fn fdrpc_x(&self); }"),
            Vec::<String>::new()
        );
    }
}
