//! `#[fdrpc::service]`: one [`ServiceGenerator`] per service, with one method per generated
//! item (as tarpc's `ServiceGenerator`), combined in its `ToTokens`.
//!
//! Organization (each file adds the methods of one generated item):
//! - `trait_def`: the trait rewritten so every method returns a `Send` future.
//! - `args`: one arguments struct per method, with explicit field ids.
//! - `idl`: the function that renders the service's Thrift IDL.
//! - `client`: `{Trait}Client` and `{Trait}BlockingClient`, and the list of the items they
//!   have besides the service's methods.
//! - `server`: `{Trait}Server`, which dispatches calls to an implementation.
//! - `methods`: `{Trait}Method`, the methods as an enum that knows their wire names.
//! - `protocol`: `{Trait}Protocol`, the service as a type, for `ClientEnd`/`ServerEnd`.

mod args;
mod client;
mod idl;
mod methods;
mod protocol;
mod server;
mod trait_def;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::{Ident, Type};

pub(crate) use client::{Clash, client_item};

use crate::ast::service::{Method, Service};

/// Generates everything one service needs.
pub(crate) struct ServiceGenerator<'a> {
    service: &'a Service<'a>,
    /// `{krate}`: where the `fdrpc` crate is.
    krate: &'a syn::Path,
    /// `{krate}::__private`: all generated code reaches the runtime through it.
    p: TokenStream,
    client: Ident,
    blocking: Ident,
    server: Ident,
    protocol: Ident,
}

impl<'a> ServiceGenerator<'a> {
    pub(crate) fn new(service: &'a Service<'a>) -> Self {
        let krate = &service.krate;
        let t = &service.item.ident;
        ServiceGenerator {
            service,
            krate,
            p: quote!(#krate::__private),
            client: format_ident!("{}Client", t),
            blocking: format_ident!("{}BlockingClient", t),
            server: format_ident!("{}Server", t),
            protocol: format_ident!("{}Protocol", t),
        }
    }

    /// The hidden arguments struct of `m`.
    fn args_ident(m: &Method<'_>) -> Ident {
        format_ident!("__fdrpc_args_{}", m.ident)
    }

    /// The declared exception of `m`, or `Infallible`.
    fn exception(&self, m: &Method<'_>) -> TokenStream {
        let p = &self.p;
        match m.ret.exception {
            Some(e) => self.projection(e, quote!(Exception)),
            None => quote!(#p::Infallible),
        }
    }

    /// `t` where generated code needs it to be a field: `<t as Travels>::Itself`, which is `t`.
    /// Every use of a type that cannot be a field then reports one and the same error, at the
    /// type, and the compiler shows it once.
    pub(super) fn travels(&self, t: &Type) -> TokenStream {
        self.projection(t, quote!(Travels))
    }

    /// `<t as {krate}::__private::{tr}>::Itself`, spanned from the first to the last token of
    /// `t`, so an error about it underlines the type as the user wrote it.
    pub(super) fn projection(&self, t: &Type, tr: TokenStream) -> TokenStream {
        let p = &self.p;
        let tokens = t.to_token_stream();
        let first = tokens
            .clone()
            .into_iter()
            .next()
            .map_or_else(Span::call_site, |x| x.span());
        let last = tokens.into_iter().last().map_or(first, |x| x.span());
        let open = quote_spanned!(first=> <#t as #p::#tr);
        let close = quote_spanned!(last=> >::Itself);
        quote!(#open #close)
    }

    /// The error type of a stream: as declared, or `Infallible`.
    fn stream_error(&self, error: Option<&Type>) -> TokenStream {
        let p = &self.p;
        match error {
            Some(e) => quote!(#e),
            None => quote!(#p::Infallible),
        }
    }

    /// The error type of a stream where generated code needs it to be a field (see
    /// [`Self::travels`]).
    pub(super) fn stream_error_checked(&self, error: Option<&Type>) -> TokenStream {
        let p = &self.p;
        match error {
            Some(e) => self.travels(e),
            None => quote!(#p::Infallible),
        }
    }

    /// The decoder of a result struct with success type `value` (none: `void`) and `m`'s
    /// exception, as a non-capturing closure.
    fn decode_result(&self, m: &Method<'_>, value: Option<&Type>) -> TokenStream {
        let p = &self.p;
        let has_exc = m.ret.exception.is_some();
        let exc = self.exception(m);
        match value {
            Some(t) => {
                let t = self.travels(t);
                quote!(|__d| #p::decode_result::<#t, #exc>(__d, #has_exc))
            }
            None => quote!(|__d| #p::decode_void_result::<#exc>(__d, #has_exc)),
        }
    }
}

impl ToTokens for ServiceGenerator<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let p = &self.p;
        let trait_def = self.trait_def();
        let args = self.args_structs();
        let idl = self.idl_fn();
        let blocking_type = self.blocking_client_type();
        let blocking_impl = self.blocking_client_impl();
        let async_type = self.async_client_type();
        let async_impl = self.async_client_impl();
        let server_type = self.server_type();
        let server_impl = self.server_impl();
        let methods = self.method_enum();
        let protocol_type = self.protocol_type();
        let protocol_impl = self.protocol_impl();
        tokens.extend(quote! {
            #trait_def
            #methods
            #protocol_type
            #blocking_type
            #[doc(hidden)]
            #[allow(non_camel_case_types, clippy::all)]
            const _: () = {
                #args
                #idl
                #blocking_impl
                #server_impl
                #protocol_impl
                #p::if_tokio! {
                    #async_impl
                }
            };
            #server_type
            #p::if_tokio! {
                #async_type
            }
        });
    }
}
