//! A `#[fdrpc::service]` trait as fdrpc sees it: its methods, their wire parameters, the
//! context parameter, and what they return.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, Ident, ItemTrait, LitStr, Pat, Path, ReturnType, Token, TraitItem,
    TraitItemFn, Type,
};

use crate::attr::{Attrs, Position, is_thrift_identifier};
use crate::ctxt::Ctxt;
use crate::symbol::{CRATE, FDRPC, ONEWAY, RENAME};

/// The arguments of `#[fdrpc::service(...)]`.
pub(crate) struct ServiceArgs {
    pub(crate) krate: Option<Path>,
    pub(crate) rename: Option<LitStr>,
}

impl Parse for ServiceArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut out = ServiceArgs {
            krate: None,
            rename: None,
        };
        let metas = Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated(input)?;
        for m in metas {
            let key = m
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            match (key.as_str(), &m.value) {
                (CRATE, syn::Expr::Path(p)) if out.krate.is_none() => {
                    out.krate = Some(p.path.clone())
                }
                (
                    RENAME,
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }),
                ) if out.rename.is_none() => {
                    if !is_thrift_identifier(&s.value()) {
                        return Err(syn::Error::new(
                            s.span(),
                            "the service name must be a Thrift identifier",
                        ));
                    }
                    out.rename = Some(s.clone());
                }
                (CRATE | RENAME, _) => {
                    return Err(syn::Error::new(
                        m.span(),
                        "expected `crate = path` or `rename = \"Name\"`, each at most once",
                    ));
                }
                _ => {
                    return Err(syn::Error::new(
                        m.path.span(),
                        format!(
                            "unknown `#[fdrpc::service]` argument `{key}`; expected `crate` or `rename`"
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }
}

pub(crate) struct Service<'a> {
    pub(crate) item: &'a ItemTrait,
    /// Thrift service name.
    pub(crate) name: String,
    pub(crate) krate: Path,
    pub(crate) methods: Vec<Method<'a>>,
}

pub(crate) struct Method<'a> {
    pub(crate) item: &'a TraitItemFn,
    pub(crate) ident: &'a Ident,
    /// Wire name.
    pub(crate) name: String,
    pub(crate) name_span: Span,
    pub(crate) oneway: Option<Span>,
    /// Doc comments and other attributes that are not fdrpc's, kept on generated methods.
    pub(crate) docs: Vec<&'a Attribute>,
    /// Parameters in declaration order, the context among them.
    pub(crate) params: Vec<Param<'a>>,
    pub(crate) ret: Return<'a>,
}

pub(crate) struct Param<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    /// `fdrpc::Stream<T, E>`: this parameter is the call's sink (not in the arguments struct).
    pub(crate) stream: Option<StreamType<'a>>,
    /// `#[fdrpc(...)]` attributes, passed on to the arguments struct's field.
    pub(crate) attrs: Vec<&'a Attribute>,
    /// Field id in the arguments struct (as the derive will number it).
    pub(crate) id: i64,
    /// Field name in the arguments struct.
    pub(crate) wire_name: String,
    /// `#[fdrpc(binary)]`.
    pub(crate) binary: bool,
    /// This is the `cx: &fdrpc::Context` parameter (not on the wire).
    pub(crate) is_context: bool,
}

/// The item and error types of an `fdrpc::Stream<T, E>`.
#[derive(Clone, Copy)]
pub(crate) struct StreamType<'a> {
    pub(crate) item: &'a Type,
    pub(crate) error: Option<&'a Type>,
}

/// What a method returns, split into its Thrift result struct fields.
pub(crate) struct Return<'a> {
    /// The method returns `fdrpc::Stream<T, E>` (or `Result<fdrpc::Stream<T, E>, X>`, or a
    /// first response with it: `(R, fdrpc::Stream<T, E>)`, whose `R` is then `value`).
    pub(crate) stream: Option<StreamType<'a>>,
    /// The success type; `None` for `()` (a Thrift `void`).
    pub(crate) value: Option<&'a Type>,
    /// The `E` of `Result<T, E>`: result field 1.
    pub(crate) exception: Option<&'a Type>,
    /// The whole written return type, if any.
    pub(crate) written: Option<&'a Type>,
}

impl<'a> Method<'a> {
    pub(crate) fn wire_params(&self) -> impl Iterator<Item = &Param<'a>> {
        self.params
            .iter()
            .filter(|p| !p.is_context && p.stream.is_none())
    }

    pub(crate) fn sink(&self) -> Option<&Param<'a>> {
        self.params.iter().find(|p| p.stream.is_some())
    }

    pub(crate) fn context(&self) -> Option<&Param<'a>> {
        self.params.iter().find(|p| p.is_context)
    }
}

pub(crate) fn is_fdrpc_attr(attr: &Attribute) -> bool {
    attr.path().is_ident(FDRPC) || attr.path().is_ident(ONEWAY)
}

impl<'a> Service<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, args: &ServiceArgs, item: &'a ItemTrait) -> Service<'a> {
        let krate = args
            .krate
            .clone()
            .unwrap_or_else(|| syn::parse_quote!(::fdrpc));
        let name = args
            .rename
            .as_ref()
            .map(LitStr::value)
            .unwrap_or_else(|| item.ident.to_string());
        if let Some(g) = item.generics.lt_token {
            cx.error_spanned_by(
                &item.generics,
                "a service trait cannot be generic; the wire needs one concrete signature per method",
            );
            let _ = g;
        }
        if let Some(unsafety) = item.unsafety {
            cx.error_spanned_by(unsafety, "a service trait cannot be `unsafe`");
        }
        for attr in &item.attrs {
            if attr.path().is_ident(FDRPC) {
                cx.error_spanned_by(
                    attr,
                    "put service options in `#[fdrpc::service(...)]` itself (`crate = ...`, `rename = \"...\"`)",
                );
            }
        }
        let mut methods = Vec::new();
        for ti in &item.items {
            match ti {
                TraitItem::Fn(f) => {
                    if let Some(m) = method_from_syn(cx, f) {
                        methods.push(m);
                    }
                }
                other => cx.error_spanned_by(
                    other,
                    "a service trait holds only methods; move constants and types out of it",
                ),
            }
        }
        Service {
            item,
            name,
            krate,
            methods,
        }
    }
}

fn method_from_syn<'a>(cx: &Ctxt, f: &'a TraitItemFn) -> Option<Method<'a>> {
    let sig = &f.sig;
    let mut oneway = None;
    let fdrpc_attrs: Vec<Attribute> = f
        .attrs
        .iter()
        .filter(|a| {
            if a.path().is_ident(ONEWAY) {
                if !matches!(a.meta, syn::Meta::Path(_)) {
                    cx.error_spanned_by(a, "`#[oneway]` takes no arguments");
                }
                if oneway.replace(a.path().span()).is_some() {
                    cx.error_spanned_by(a, "duplicate `#[oneway]`");
                }
                false
            } else {
                a.path().is_ident(FDRPC)
            }
        })
        .cloned()
        .collect();
    let attrs = Attrs::from_syn(cx, Position::Method, &fdrpc_attrs);
    if let Some(span) = attrs.oneway.span() {
        if oneway.replace(span).is_some() {
            cx.syn_error(syn::Error::new(span, "`#[oneway]` given twice"));
        }
    }
    let docs = f.attrs.iter().filter(|a| !is_fdrpc_attr(a)).collect();

    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            "service methods must be `async fn`; the server awaits every handler",
        );
    }
    if let Some(c) = &sig.constness {
        cx.error_spanned_by(c, "a service method cannot be `const`");
    }
    if let Some(u) = &sig.unsafety {
        cx.error_spanned_by(u, "a service method cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(abi, "a service method cannot have an ABI");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &sig.generics,
            "a service method cannot be generic; the wire needs one concrete signature",
        );
    }
    if let Some(v) = &sig.variadic {
        cx.error_spanned_by(v, "a service method cannot be variadic");
    }
    if let Some(body) = &f.default {
        cx.error_spanned_by(
            body,
            "a service method has no body in the trait; implement it in `impl Trait for YourType`",
        );
    }

    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) => {
            if r.reference.is_none() || r.mutability.is_some() || r.colon_token.is_some() {
                cx.error_spanned_by(
                    r,
                    "service methods take `&self`: calls run concurrently, so keep mutable state behind a lock",
                );
            }
        }
        _ => {
            cx.error_spanned_by(
                &sig.ident,
                "service methods take `&self` as their first parameter",
            );
        }
    }
    let mut params = Vec::new();
    let mut context_seen: Option<Span> = None;
    for arg in inputs {
        let FnArg::Typed(pt) = arg else { continue };
        let ident = match &*pt.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => &pi.ident,
            other => {
                cx.error_spanned_by(
                    other,
                    "service method parameters must be plain names; they become the fields of the call's arguments struct",
                );
                continue;
            }
        };
        let is_context = match context_kind(&pt.ty) {
            ContextKind::NotContext => false,
            ContextKind::ByRef => {
                if let Some(first) = context_seen {
                    let _ = first;
                    cx.error_spanned_by(
                        &pt.ty,
                        "a method takes the context at most once; remove this parameter",
                    );
                }
                context_seen = Some(pt.ty.span());
                true
            }
            ContextKind::ByValue => {
                cx.error_spanned_by(
                    &pt.ty,
                    "take the context by reference: `cx: &fdrpc::Context`",
                );
                true
            }
            ContextKind::ByMut => {
                cx.error_spanned_by(
                    &pt.ty,
                    "take the context by shared reference: `cx: &fdrpc::Context`",
                );
                true
            }
        };
        let param_attrs: Vec<&Attribute> = pt
            .attrs
            .iter()
            .filter(|a| a.path().is_ident(FDRPC))
            .collect();
        for a in &pt.attrs {
            if !a.path().is_ident(FDRPC) {
                cx.error_spanned_by(
                    a,
                    "only `#[fdrpc(...)]` attributes are allowed on service method parameters",
                );
            }
        }
        if is_context {
            if let Some(a) = param_attrs.first() {
                cx.error_spanned_by(
                    a,
                    "the context is not on the wire; it takes no `#[fdrpc(...)]`",
                );
            }
        }
        // Validate keys now so errors point at the trait, not at generated code.
        let owned: Vec<Attribute> = param_attrs.iter().map(|a| (*a).clone()).collect();
        let pattrs = if is_context {
            Attrs::from_syn(&Ctxt::new_checked(), Position::Param, &[])
        } else {
            Attrs::from_syn(cx, Position::Param, &owned)
        };
        let position = params
            .iter()
            .filter(|p: &&Param<'_>| !p.is_context && p.stream.is_none())
            .count() as i64
            + 1;
        let id = pattrs.id.get().copied().unwrap_or(position);
        let wire_name = pattrs
            .rename
            .get()
            .cloned()
            .unwrap_or_else(|| syn::ext::IdentExt::unraw(ident).to_string());
        let binary = pattrs.binary.get().is_some();
        let stream = if is_context {
            None
        } else {
            stream_type(&pt.ty)
        };
        if stream.is_some() {
            if let Some(a) = param_attrs.first() {
                cx.error_spanned_by(a, "a stream parameter is not in the arguments struct; it takes no `#[fdrpc(...)]`");
            }
            if params.iter().any(|p: &Param<'_>| p.stream.is_some()) {
                cx.error_spanned_by(&pt.ty, "a method takes at most one stream parameter");
            }
        }
        params.push(Param {
            ident,
            ty: &pt.ty,
            stream,
            attrs: param_attrs,
            id,
            wire_name,
            binary,
            is_context,
        });
    }

    let ret = match &sig.output {
        ReturnType::Default => Return {
            stream: None,
            value: None,
            exception: None,
            written: None,
        },
        ReturnType::Type(_, ty) => {
            let (value, exception) = split_result(ty);
            // `(R, Stream<T, E>)`: a first response alongside the stream.
            let (value, stream) = match value {
                Some(Type::Tuple(t)) if t.elems.len() == 2 => {
                    match (t.elems.first(), t.elems.last().and_then(stream_type)) {
                        (Some(first), Some(st)) => (Some(first), Some(st)),
                        _ => (value, None),
                    }
                }
                Some(v) => match stream_type(v) {
                    Some(st) => (None, Some(st)),
                    None => (Some(v), None),
                },
                None => (None, None),
            };
            Return {
                stream,
                value: value.filter(|t| !is_unit(t)),
                exception,
                written: Some(ty),
            }
        }
    };
    let name = attrs
        .name
        .get()
        .cloned()
        .unwrap_or_else(|| syn::ext::IdentExt::unraw(&sig.ident).to_string());
    Some(Method {
        item: f,
        ident: &sig.ident,
        name,
        name_span: attrs.name.span().unwrap_or_else(|| sig.ident.span()),
        oneway,
        docs,
        params,
        ret,
    })
}

enum ContextKind {
    NotContext,
    ByRef,
    ByMut,
    ByValue,
}

fn last_ident(ty: &Type) -> Option<&Ident> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| &s.ident),
        Type::Group(g) => last_ident(&g.elem),
        Type::Paren(p) => last_ident(&p.elem),
        _ => None,
    }
}

fn context_kind(ty: &Type) -> ContextKind {
    match ty {
        Type::Reference(r) if last_ident(&r.elem).is_some_and(|i| i == "Context") => {
            if r.mutability.is_some() {
                ContextKind::ByMut
            } else {
                ContextKind::ByRef
            }
        }
        _ if last_ident(ty).is_some_and(|i| i == "Context") => ContextKind::ByValue,
        _ => ContextKind::NotContext,
    }
}

/// The type arguments of `ty` if it is a path whose last segment is `name` (`Stream<T, E>` ->
/// `[T, E]`); lifetimes and consts are skipped.
fn type_args<'a>(ty: &'a Type, name: &str) -> Option<Vec<&'a Type>> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != name {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    Some(
        args.args
            .iter()
            .filter_map(|a| match a {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
    )
}

/// `Stream<T>` or `Stream<T, E>` (any path ending in `Stream`).
pub(crate) fn stream_type(ty: &Type) -> Option<StreamType<'_>> {
    match type_args(ty, "Stream")?[..] {
        [item] => Some(StreamType { item, error: None }),
        [item, error] => Some(StreamType {
            item,
            error: Some(error),
        }),
        _ => None,
    }
}

/// `Result<T, E>` (two type arguments) splits into `T` and `E`.
fn split_result(ty: &Type) -> (Option<&Type>, Option<&Type>) {
    match type_args(ty, "Result").as_deref() {
        Some(&[ok, err]) => (Some(ok), Some(err)),
        _ => (Some(ty), None),
    }
}

pub(crate) fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(t) => t.elems.is_empty(),
        Type::Paren(p) => is_unit(&p.elem),
        Type::Group(g) => is_unit(&g.elem),
        _ => false,
    }
}
