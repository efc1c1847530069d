//! `#[fdrpc::service]`: the trait rewritten for `Send` futures, one arguments struct per
//! method, and the generated client and server types.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ItemTrait;
use syn::spanned::Spanned;

use crate::ast::service::{Method, Service, ServiceArgs, is_fdrpc_attr};
use crate::check;
use crate::ctxt::Ctxt;
use crate::expand::{client, server};

pub(crate) fn expand(args: ServiceArgs, item: &ItemTrait) -> TokenStream {
    let cx = Ctxt::new();
    let service = Service::from_syn(&cx, &args, item);
    check::service::check(&cx, &service);
    match cx.check() {
        Ok(()) => generate(&service),
        Err(e) => {
            // Keep the trait so code using it reports no follow-on errors.
            let mut out = e.to_compile_error();
            out.extend(rewritten_trait(&service));
            out
        }
    }
}

fn generate(service: &Service<'_>) -> TokenStream {
    let tr = rewritten_trait(service);
    let args = service.methods.iter().map(|m| args_struct(service, m));
    let client_types = client::types(service);
    let client_impls = client::impls(service);
    let server_type = server::server_type(service);
    let server_impl = server::server_impl(service);
    let idl = idl_fn(service);
    quote! {
        #tr
        #client_types
        #server_type
        #[doc(hidden)]
        #[allow(non_camel_case_types, clippy::all)]
        const _: () = {
            #(#args)*
            #idl
            #client_impls
            #server_impl
        };
    }
}

/// The trait as users implement it: each `async fn` becomes a method returning a `Send`
/// future (so the server can run handlers on any thread), still implementable with
/// `async fn`.
fn rewritten_trait(service: &Service<'_>) -> TokenStream {
    let item = service.item;
    let attrs = item.attrs.iter().filter(|a| !is_fdrpc_attr(a));
    let vis = &item.vis;
    let ident = &item.ident;
    let supertraits = item.supertraits.iter();
    let methods = service.methods.iter().map(|m| {
        let docs = &m.docs;
        let name = m.ident;
        let params = m.params.iter().map(|p| {
            let (i, t) = (p.ident, p.ty);
            quote!(#i: #t)
        });
        let output = match m.ret.written {
            Some(ty) => quote!(#ty),
            None => quote!(()),
        };
        let span = m.item.sig.span();
        quote_spanned! {span=>
            #(#docs)*
            fn #name(&self, #(#params),*)
                -> impl ::core::future::Future<Output = #output> + ::core::marker::Send;
        }
    });
    quote! {
        #(#attrs)*
        #vis trait #ident: ::core::marker::Send + ::core::marker::Sync + 'static #(+ #supertraits)* {
            #(#methods)*
        }
    }
}

pub(crate) fn args_ident(m: &Method<'_>) -> syn::Ident {
    format_ident!("__fdrpc_args_{}", m.ident)
}

/// The Thrift `{method}_args` struct: parameter n (not counting the context) is field n.
fn args_struct(service: &Service<'_>, m: &Method<'_>) -> TokenStream {
    let krate = &service.krate;
    let ident = args_ident(m);
    let wire_name = format!("{}_args", m.name);
    let fields = m.wire_params().map(|p| {
        let (i, t) = (p.ident, p.ty);
        let attrs = &p.attrs;
        quote!(#(#attrs)* #i: #t)
    });
    let wire = &m.name;
    let reserved = format!(
        "the wire name `{wire}` is a reserved word in Thrift IDL; give the method another one with #[fdrpc(name = \"...\")]"
    );
    let reserved_check = quote_spanned! {m.name_span=>
        const _: () = if #krate::__private::is_reserved(#wire) {
            ::core::panic!(#reserved)
        };
    };
    let exception_check = m.ret.exception.map(
        |e| quote_spanned!(e.span()=> const _: () = #krate::__private::assert_message::<#e>();),
    );
    quote! {
        #[derive(#krate::Message)]
        #[fdrpc(crate = #krate, rename = #wire_name)]
        struct #ident {
            #(#fields,)*
        }
        #exception_check
        #reserved_check
    }
}

/// The decoder of a method's result struct, as a non-capturing closure.
pub(crate) fn decode_reply(service: &Service<'_>, m: &Method<'_>) -> TokenStream {
    let p = private(service);
    let has_exc = m.ret.exception.is_some();
    let exc = match m.ret.exception {
        Some(e) => quote!(#e),
        None => quote!(#p::Infallible),
    };
    match m.ret.value {
        Some(t) => quote!(|__d| #p::decode_result::<#t, #exc>(__d, #has_exc)),
        None => quote!(|__d| #p::decode_void_result::<#exc>(__d, #has_exc)),
    }
}

pub(crate) fn private(service: &Service<'_>) -> TokenStream {
    let krate = &service.krate;
    quote!(#krate::__private)
}

fn doc_strings(attrs: &[&syn::Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// `fn __fdrpc_idl() -> String`: the service's Thrift IDL with every type it uses.
fn idl_fn(service: &Service<'_>) -> TokenStream {
    let p = private(service);
    let name = &service.name;
    let service_doc: Vec<&syn::Attribute> = service
        .item
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let service_doc = doc_strings(&service_doc);
    let functions = service.methods.iter().map(|m| {
        let wire = &m.name;
        let doc = doc_strings(&m.docs);
        let oneway = m.oneway.is_some();
        let params = m.wire_params().map(|param| {
            let (id, n, ty) = (param.id as i16, &param.wire_name, param.ty);
            let repr = if param.binary {
                if crate::expand::message::is_option(ty) {
                    quote!(#p::Option<#p::Binary>)
                } else {
                    quote!(#p::Binary)
                }
            } else {
                quote!(#ty)
            };
            quote!(#p::IdlField::new(#id, #n, <#repr as #p::Field>::idl_type(&mut __idl), false))
        });
        let returns = match m.ret.value {
            Some(t) => quote!(<#t as #p::Field>::idl_type(&mut __idl)),
            None => quote!(#p::String::from("void")),
        };
        let throws = match m.ret.exception {
            Some(e) => quote! {{
                let __e = <#e as #p::Field>::idl_type(&mut __idl);
                __idl.mark_exception(&__e);
                #p::Option::Some(__e)
            }},
            None => quote!(#p::Option::None),
        };
        let mut annotations = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        if let Some(st) = m.ret.stream {
            let item = st.item;
            annotations.push(quote!((#p::String::from("fdrpc.stream"), <#item as #p::Field>::idl_type(&mut __idl))));
            if let Some(e) = st.error {
                annotations.push(quote!((#p::String::from("fdrpc.stream_error"), <#e as #p::Field>::idl_type(&mut __idl))));
            }
            notes.push("fdrpc stream: the reply opens a stream of the `fdrpc.stream` items (docs/PROTOCOL.md, \"Streams and sinks\"); a stock Thrift client sees only the opening reply.".into());
        }
        if let Some(st) = m.sink().and_then(|s| s.stream) {
            let item = st.item;
            annotations.push(quote!((#p::String::from("fdrpc.sink"), <#item as #p::Field>::idl_type(&mut __idl))));
            if let Some(e) = st.error {
                annotations.push(quote!((#p::String::from("fdrpc.sink_error"), <#e as #p::Field>::idl_type(&mut __idl))));
            }
            notes.push("fdrpc sink: the caller also sends a stream of the `fdrpc.sink` items (docs/PROTOCOL.md, \"Streams and sinks\").".into());
        }
        if let Some(t) = m.ret.value {
            if crate::expand::message::is_option(t) {
                notes.push("Returns nothing (the result's success field unset) for none.".into());
            }
        }
        let note = if notes.is_empty() {
            quote!(#p::Option::None)
        } else {
            let n = notes.join(" ");
            quote!(#p::Option::Some(#p::String::from(#n)))
        };
        quote! {
            #p::IdlFunction {
                name: #p::String::from(#wire),
                doc: #p::Vec::from([#(#p::String::from(#doc)),*]),
                oneway: #oneway,
                returns: #returns,
                params: #p::Vec::from([#(#params),*]),
                throws: #throws,
                annotations: #p::Vec::from([#(#annotations),*]),
                note: #note,
            }
        }
    });
    quote! {
        fn __fdrpc_idl() -> #p::String {
            let mut __idl = #p::Idl::new();
            let mut __functions: #p::Vec<#p::IdlFunction> = #p::Vec::new();
            #(__functions.push(#functions);)*
            __functions.push(#p::introspection_function());
            __idl.service(#name, &[#(#p::String::from(#service_doc)),*], &__functions);
            __idl.render()
        }
    }
}
