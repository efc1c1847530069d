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
    quote! {
        #tr
        #client_types
        #server_type
        #[doc(hidden)]
        #[allow(non_camel_case_types, clippy::all)]
        const _: () = {
            #(#args)*
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
    }
}

/// The decoder of a method's result struct, as a non-capturing closure.
pub(crate) fn decode_reply(service: &Service<'_>, m: &Method<'_>) -> TokenStream {
    let p = private(service);
    let has_exc = m.ret.exception.is_some();
    let exc = match m.ret.exception {
        Some(e) => quote!(#e),
        None => quote!(#p::NoException),
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
