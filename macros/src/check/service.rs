//! Rules across the methods of a service.

use std::collections::HashMap;

use crate::ast::service::Service;
use crate::check::check_type;
use crate::ctxt::Ctxt;

/// Inherent methods of the generated clients; a service method of the same name would be
/// shadowed.
const CLIENT_METHODS: &[&str] = &[
    "connect",
    "new",
    "from_std",
    "with_timeout",
    "client",
    "into_inner",
];

pub(crate) fn check(cx: &Ctxt, service: &Service<'_>) {
    check_unique_names(cx, service);
    for m in &service.methods {
        if CLIENT_METHODS.contains(&m.ident.to_string().as_str()) {
            cx.error_spanned_by(
                m.ident,
                format!(
                    "`{}` clashes with a method of the generated clients; rename it and keep its wire name with `#[fdrpc(name = \"{}\")]`",
                    m.ident, m.ident
                ),
            );
        }
        if m.ident.to_string().starts_with("__fdrpc") || m.name.starts_with("_fdrpc") {
            cx.error_spanned_by(
                m.ident,
                "wire names starting with `_fdrpc` are reserved (`_fdrpc_idl` is the introspection method)",
            );
        }
        if let Some(span) = m.oneway {
            if let Some(ty) = m.ret.written {
                if !crate::ast::service::is_unit(ty) {
                    cx.error_spanned_by(
                        ty,
                        "a `#[oneway]` method sends no reply, so it returns nothing; remove the return type or `#[oneway]`",
                    );
                }
            }
            let _ = span;
            if let Some(p) = m.sink() {
                cx.error_spanned_by(
                    p.ty,
                    "a `#[oneway]` method cannot take a stream: a sink needs a reply; drop `#[oneway]`",
                );
            }
        }
        for p in m.wire_params() {
            check_type(cx, p.ty);
        }
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
}

/// Wire names are what calls are routed by.
fn check_unique_names(cx: &Ctxt, service: &Service<'_>) {
    let mut seen: HashMap<&str, &syn::Ident> = HashMap::new();
    for m in &service.methods {
        if let Some(first) = seen.insert(m.name.as_str(), m.ident) {
            cx.syn_error(syn::Error::new(
                m.name_span,
                format!(
                    "method `{first}` already has the wire name `{}`; give this one another `#[fdrpc(name = \"...\")]`",
                    m.name
                ),
            ));
        }
    }
}
