//! A `#[fdrpc::service]` trait as fdrpc sees it: its options, its methods, their parameters
//! and what they return. Parsing records what was written and keeps the syn nodes for spans;
//! whether it is allowed is decided in `check::service`, one rule a function.

use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, Ident, ItemTrait, LitStr, Meta, Pat, Path, Receiver, ReturnType, Token,
    TraitItem, TraitItemFn, Type,
};

use crate::attr::{Attrs, Position, is_thrift_identifier};
use crate::ctxt::Ctxt;
use crate::symbol::{CRATE, FDRPC, ONEWAY, RENAME};

/// The arguments of `#[fdrpc::service(...)]`.
pub(crate) type ServiceArgs = Punctuated<Meta, Token![,]>;

/// The options of `#[fdrpc::service(...)]`, each checked on its own so every bad one is
/// reported.
#[derive(Default)]
pub(crate) struct ServiceOptions {
    pub(crate) krate: Option<Path>,
    pub(crate) rename: Option<LitStr>,
}

impl ServiceOptions {
    pub(crate) fn from_syn(cx: &Ctxt, args: &ServiceArgs) -> ServiceOptions {
        let mut out = ServiceOptions::default();
        for meta in args {
            let key = meta
                .path()
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            let value = match meta {
                Meta::NameValue(nv) => Some(&nv.value),
                _ => None,
            };
            match (key.as_str(), value) {
                (CRATE, Some(syn::Expr::Path(p))) if out.krate.is_none() => {
                    out.krate = Some(p.path.clone());
                }
                (
                    RENAME,
                    Some(syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    })),
                ) if out.rename.is_none() => {
                    if !is_thrift_identifier(&s.value()) {
                        cx.error_spanned_by(s, "the service name must be a Thrift identifier");
                    }
                    out.rename = Some(s.clone());
                }
                // The arms above took these when they came first.
                (CRATE, Some(syn::Expr::Path(_)))
                | (
                    RENAME,
                    Some(syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(_),
                        ..
                    })),
                ) => {
                    cx.error_spanned_by(meta.path(), format!("`{key}` given twice"));
                }
                (CRATE, _) => cx.error_spanned_by(
                    meta,
                    "`crate` takes the path of the fdrpc crate, such as `crate = ::fdrpc`",
                ),
                (RENAME, _) => cx.error_spanned_by(
                    meta,
                    "`rename` takes the Thrift service name as a string, such as `rename = \"Broker\"`",
                ),
                _ => cx.error_spanned_by(
                    meta.path(),
                    format!(
                        "unknown `#[fdrpc::service]` argument `{key}`; expected `crate` or `rename`"
                    ),
                ),
            }
        }
        out
    }
}

pub(crate) struct Service<'a> {
    pub(crate) item: &'a ItemTrait,
    /// Thrift service name.
    pub(crate) name: String,
    pub(crate) krate: Path,
    pub(crate) methods: Vec<Method<'a>>,
    /// Trait items that are not methods.
    pub(crate) other_items: Vec<&'a TraitItem>,
}

pub(crate) struct Method<'a> {
    pub(crate) item: &'a TraitItemFn,
    pub(crate) ident: &'a Ident,
    /// Wire name.
    pub(crate) name: String,
    /// Where the wire name was given (`#[fdrpc(rename = ..)]`), or the method's name.
    pub(crate) name_span: Span,
    /// Every `#[oneway]` / `#[fdrpc(oneway)]`, where it was written.
    pub(crate) oneway: Vec<Span>,
    /// Doc comments and other attributes that are not fdrpc's, kept on generated methods.
    pub(crate) docs: Vec<&'a Attribute>,
    /// `&self` or another receiver, if the first parameter is one.
    pub(crate) receiver: Option<&'a Receiver>,
    /// Parameters after the receiver, in declaration order, the context among them.
    pub(crate) params: Vec<Param<'a>>,
    pub(crate) ret: Return<'a>,
}

pub(crate) struct Param<'a> {
    /// The pattern as written; a plain name is the only one allowed.
    pub(crate) pat: &'a Pat,
    /// The name; a stand-in for a pattern that is not one.
    pub(crate) ident: Ident,
    pub(crate) ty: &'a Type,
    /// `fdrpc::Stream<T, E>`: this parameter is the call's sink (not in the arguments struct).
    pub(crate) stream: Option<StreamType<'a>>,
    /// What kind of context parameter this is, if it names `Context`.
    pub(crate) context: Option<ContextKind>,
    /// `#[fdrpc(...)]` attributes.
    pub(crate) fdrpc_attrs: Vec<&'a Attribute>,
    /// Attributes that are not fdrpc's.
    pub(crate) other_attrs: Vec<&'a Attribute>,
    /// Field id in the arguments struct.
    pub(crate) id: i64,
    /// Where the id came from.
    pub(crate) id_span: Span,
    /// Field name in the arguments struct.
    pub(crate) wire_name: String,
    /// `#[fdrpc(binary)]`.
    pub(crate) binary: bool,
    /// `#[fdrpc(fd)]`.
    pub(crate) fd: bool,
}

/// How a parameter naming `Context` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContextKind {
    /// `&Context`: the one allowed form.
    Shared,
    /// `&mut Context`.
    Mutable,
    /// `Context`.
    Owned,
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
    /// The parameters in the arguments struct: all but the context and the sink.
    pub(crate) fn wire_params(&self) -> impl Iterator<Item = &Param<'a>> {
        self.params
            .iter()
            .filter(|p| p.context.is_none() && p.stream.is_none())
    }

    /// The parameters a client method takes: all but the context.
    pub(crate) fn client_params(&self) -> impl Iterator<Item = &Param<'a>> {
        self.params.iter().filter(|p| p.context.is_none())
    }

    pub(crate) fn sink(&self) -> Option<&Param<'a>> {
        self.params.iter().find(|p| p.stream.is_some())
    }

    pub(crate) fn context(&self) -> Option<&Param<'a>> {
        self.params.iter().find(|p| p.context.is_some())
    }

    pub(crate) fn is_oneway(&self) -> bool {
        !self.oneway.is_empty()
    }
}

pub(crate) fn is_fdrpc_attr(attr: &Attribute) -> bool {
    attr.path().is_ident(FDRPC) || attr.path().is_ident(ONEWAY)
}

impl<'a> Service<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, options: ServiceOptions, item: &'a ItemTrait) -> Service<'a> {
        let krate = options.krate.unwrap_or_else(|| syn::parse_quote!(::fdrpc));
        let name = options
            .rename
            .as_ref()
            .map(LitStr::value)
            .unwrap_or_else(|| item.ident.to_string());
        let mut methods = Vec::new();
        let mut other_items = Vec::new();
        for ti in &item.items {
            match ti {
                TraitItem::Fn(f) => methods.push(Method::from_syn(cx, f)),
                other => other_items.push(other),
            }
        }
        Service {
            item,
            name,
            krate,
            methods,
            other_items,
        }
    }
}

impl<'a> Method<'a> {
    fn from_syn(cx: &Ctxt, f: &'a TraitItemFn) -> Method<'a> {
        let sig = &f.sig;
        let mut oneway = Vec::new();
        let mut fdrpc_attrs = Vec::new();
        for a in &f.attrs {
            if a.path().is_ident(ONEWAY) {
                if !matches!(a.meta, Meta::Path(_)) {
                    cx.error_spanned_by(a, "`#[oneway]` takes no arguments");
                }
                oneway.push(a.path().span());
            } else if a.path().is_ident(FDRPC) {
                fdrpc_attrs.push(a.clone());
            }
        }
        let attrs = Attrs::from_syn(cx, Position::Method, &fdrpc_attrs);
        oneway.extend(attrs.oneway.span());
        let wire = attrs.wire_name();
        let name = wire
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| syn::ext::IdentExt::unraw(&sig.ident).to_string());
        let name_span = wire.map_or_else(|| sig.ident.span(), |(_, s)| s);
        let mut inputs = sig.inputs.iter().peekable();
        let receiver = match inputs.peek() {
            Some(FnArg::Receiver(r)) => {
                inputs.next();
                Some(r)
            }
            _ => None,
        };
        let mut params: Vec<Param<'a>> = Vec::new();
        for arg in inputs {
            let FnArg::Typed(pt) = arg else { continue };
            params.push(Param::from_syn(cx, pt, &params));
        }
        Method {
            item: f,
            ident: &sig.ident,
            name,
            name_span,
            oneway,
            docs: f.attrs.iter().filter(|a| !is_fdrpc_attr(a)).collect(),
            receiver,
            params,
            ret: Return::from_syn(&sig.output),
        }
    }
}

impl<'a> Param<'a> {
    /// `earlier` are the parameters before this one, for its default field id.
    fn from_syn(cx: &Ctxt, pt: &'a syn::PatType, earlier: &[Param<'a>]) -> Param<'a> {
        let ident = match &*pt.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
            // Not a plain name (reported by the checks): a stand-in keeps parsing going.
            other => Ident::new("__fdrpc_param", other.span()),
        };
        let context = context_kind(&pt.ty);
        let fdrpc_attrs: Vec<&Attribute> = pt
            .attrs
            .iter()
            .filter(|a| a.path().is_ident(FDRPC))
            .collect();
        let other_attrs = pt
            .attrs
            .iter()
            .filter(|a| !a.path().is_ident(FDRPC))
            .collect();
        let stream = match context {
            Some(_) => None,
            None => stream_type(&pt.ty),
        };
        // Keys are validated here, where the user wrote them; attributes on the context or a
        // stream, which are not on the wire, are reported by the checks instead.
        let attrs = if context.is_none() && stream.is_none() {
            let owned: Vec<Attribute> = fdrpc_attrs.iter().map(|a| (*a).clone()).collect();
            Attrs::from_syn(cx, Position::Param, &owned)
        } else {
            Attrs::from_syn(&Ctxt::new_checked(), Position::Param, &[])
        };
        let position = earlier
            .iter()
            .filter(|p| p.context.is_none() && p.stream.is_none())
            .count() as i64
            + 1;
        Param {
            pat: &pt.pat,
            ty: &pt.ty,
            stream,
            context,
            fdrpc_attrs,
            other_attrs,
            id: attrs.id.get().copied().unwrap_or(position),
            id_span: attrs.id.span().unwrap_or_else(|| ident.span()),
            wire_name: attrs
                .rename
                .get()
                .cloned()
                .unwrap_or_else(|| syn::ext::IdentExt::unraw(&ident).to_string()),
            binary: attrs.binary.get().is_some(),
            fd: attrs.fd.get().is_some(),
            ident,
        }
    }
}

impl<'a> Return<'a> {
    fn from_syn(output: &'a ReturnType) -> Return<'a> {
        let ReturnType::Type(_, ty) = output else {
            return Return {
                stream: None,
                value: None,
                exception: None,
                written: None,
            };
        };
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
}

fn last_ident(ty: &Type) -> Option<&Ident> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| &s.ident),
        Type::Group(g) => last_ident(&g.elem),
        Type::Paren(p) => last_ident(&p.elem),
        _ => None,
    }
}

/// How `ty` takes the context, if it names `Context`.
pub(crate) fn context_kind(ty: &Type) -> Option<ContextKind> {
    match ty {
        Type::Reference(r) if last_ident(&r.elem).is_some_and(|i| i == "Context") => {
            Some(if r.mutability.is_some() {
                ContextKind::Mutable
            } else {
                ContextKind::Shared
            })
        }
        _ if last_ident(ty).is_some_and(|i| i == "Context") => Some(ContextKind::Owned),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(s: &str) -> Type {
        syn::parse_str(s).unwrap()
    }

    #[test]
    fn streams_results_and_units_are_recognised() {
        let t = ty("fdrpc::Stream<OwnedFd, Failure>");
        let st = stream_type(&t).unwrap();
        assert_eq!(last_ident(st.item).unwrap(), "OwnedFd");
        assert_eq!(last_ident(st.error.unwrap()).unwrap(), "Failure");
        assert!(stream_type(&ty("Stream<i32>")).unwrap().error.is_none());
        assert!(stream_type(&ty("Vec<i32>")).is_none());
        assert!(stream_type(&ty("Stream")).is_none());
        assert!(stream_type(&ty("Stream<A, B, C>")).is_none());
        let r = ty("Result<i32, Failure>");
        let (ok, err) = split_result(&r);
        assert_eq!(last_ident(ok.unwrap()).unwrap(), "i32");
        assert_eq!(last_ident(err.unwrap()).unwrap(), "Failure");
        let io = ty("io::Result<i32>");
        let (ok, err) = split_result(&io);
        assert!(
            ok.is_some() && err.is_none(),
            "a one-argument Result is a value"
        );
        assert!(is_unit(&ty("()")));
        assert!(is_unit(&ty("(())")));
        assert!(!is_unit(&ty("(i32,)")));
    }

    /// `ty` wrapped in the invisible group a `macro_rules!` `$t:ty` makes.
    fn grouped(ty: Type) -> Type {
        Type::Group(syn::TypeGroup {
            attrs: Vec::new(),
            group_token: Default::default(),
            elem: Box::new(ty),
        })
    }

    #[test]
    fn types_are_seen_through_groups_and_parentheses() {
        assert_eq!(last_ident(&grouped(ty("a::Bundle"))).unwrap(), "Bundle");
        assert_eq!(last_ident(&ty("(a::Bundle)")).unwrap(), "Bundle");
        assert!(
            last_ident(&ty("<T as Trait>::Bundle")).is_none(),
            "a qualified path"
        );
        assert!(is_unit(&grouped(ty("()"))));
        assert!(!is_unit(&grouped(ty("i32"))));
    }

    #[test]
    fn only_a_pair_is_a_first_response_and_a_stream() {
        let out: ReturnType = syn::parse_str("-> (A, B, fdrpc::Stream<i32>)").unwrap();
        let r = Return::from_syn(&out);
        assert!(r.stream.is_none(), "a triple is a plain value");
        assert!(matches!(r.value, Some(Type::Tuple(t)) if t.elems.len() == 3));
    }

    fn options(args: &str) -> (ServiceOptions, Vec<String>) {
        let cx = Ctxt::new();
        let parsed = syn::parse::Parser::parse_str(ServiceArgs::parse_terminated, args).unwrap();
        let out = ServiceOptions::from_syn(&cx, &parsed);
        let errors = match cx.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        };
        (out, errors)
    }

    #[test]
    fn service_options_are_taken_once_and_in_their_form() {
        let (o, errors) = options("crate = my::fdrpc, rename = \"Broker\"");
        assert_eq!(errors, Vec::<String>::new());
        let krate = o.krate.unwrap();
        assert_eq!(quote::quote!(#krate).to_string(), "my :: fdrpc");
        assert_eq!(o.rename.unwrap().value(), "Broker");
        let (o, errors) = options("crate = a, crate = b, rename = \"X\", rename = \"Y\"");
        assert_eq!(errors, ["`crate` given twice", "`rename` given twice"]);
        let krate = o.krate.unwrap();
        assert_eq!(quote::quote!(#krate).to_string(), "a", "the first is kept");
        assert_eq!(o.rename.unwrap().value(), "X");
        let (o, errors) = options("crate = \"fdrpc\", rename = Broker");
        assert!(o.krate.is_none() && o.rename.is_none());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("`crate` takes the path"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("`rename` takes the Thrift service name"),
            "{errors:?}"
        );
    }

    #[test]
    fn fdrpc_attributes_are_fdrpc_and_oneway_only() {
        let is = |a: Attribute| is_fdrpc_attr(&a);
        assert!(is(syn::parse_quote!(#[fdrpc(rename = "x")])));
        assert!(is(syn::parse_quote!(#[oneway])));
        assert!(!is(syn::parse_quote!(#[doc = "kept"])));
        assert!(!is(syn::parse_quote!(#[allow(unused)])));
    }

    fn param(text: &str) -> (Ident, Vec<String>) {
        let f: syn::Signature = syn::parse_str(&format!("fn f({text})")).unwrap();
        let Some(syn::FnArg::Typed(pt)) = f.inputs.first() else {
            panic!("{text}");
        };
        let cx = Ctxt::new();
        let p = Param::from_syn(&cx, pt, &[]);
        let errors = match cx.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        };
        (p.ident, errors)
    }

    #[test]
    fn a_parameter_is_a_plain_name_or_a_stand_in() {
        assert_eq!(param("x: i32").0, "x");
        assert_eq!(param("ref x: i32").0, "__fdrpc_param");
        assert_eq!(param("x @ _: i32").0, "__fdrpc_param");
        assert_eq!(
            param("mut x: i32").0,
            "x",
            "`mut` is the handler's business"
        );
    }

    #[test]
    fn keys_on_a_context_or_a_sink_are_left_to_the_checks() {
        // Not on the wire: the checks say so, once; the keys are not also validated here.
        assert_eq!(
            param("#[fdrpc(colour)] cx: &fdrpc::Context").1,
            Vec::<String>::new()
        );
        assert_eq!(
            param("#[fdrpc(colour)] s: fdrpc::Stream<i32>").1,
            Vec::<String>::new()
        );
        assert_eq!(param("#[fdrpc(colour)] x: i32").1.len(), 1);
    }

    #[test]
    fn context_kinds() {
        assert_eq!(
            context_kind(&ty("&fdrpc::Context")),
            Some(ContextKind::Shared)
        );
        assert_eq!(
            context_kind(&ty("&mut Context")),
            Some(ContextKind::Mutable)
        );
        assert_eq!(
            context_kind(&ty("fdrpc::Context")),
            Some(ContextKind::Owned)
        );
        assert_eq!(context_kind(&ty("&ContextMenu")), None);
        assert_eq!(context_kind(&ty("String")), None);
    }

    #[test]
    fn returns_split_into_result_fields() {
        let out: ReturnType =
            syn::parse_str("-> Result<(Numbered, fdrpc::Stream<i32>), Failure>").unwrap();
        let r = Return::from_syn(&out);
        assert_eq!(last_ident(r.value.unwrap()).unwrap(), "Numbered");
        assert!(r.stream.is_some());
        assert_eq!(last_ident(r.exception.unwrap()).unwrap(), "Failure");
        let out: ReturnType = syn::parse_str("-> ()").unwrap();
        let r = Return::from_syn(&out);
        assert!(r.value.is_none() && r.written.is_some());
    }
}
