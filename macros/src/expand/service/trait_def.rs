//! The trait as users implement it: each `async fn` becomes a method returning a `Send`
//! future (so the server can run handlers on any thread), still implementable with
//! `async fn`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::ServiceGenerator;
use crate::ast::service::is_fdrpc_attr;

impl ServiceGenerator<'_> {
    pub(crate) fn trait_def(&self) -> TokenStream {
        let item = self.service.item;
        let attrs = item.attrs.iter().filter(|a| !is_fdrpc_attr(a));
        let vis = &item.vis;
        let ident = &item.ident;
        let supertraits = item.supertraits.iter();
        let methods = self.service.methods.iter().map(|m| {
            let docs = &m.docs;
            let name = m.ident;
            let params = m.params.iter().map(|p| {
                let (i, t) = (&p.ident, p.ty);
                quote!(#i: #t)
            });
            let output = match m.ret.written {
                Some(ty) => quote!(#ty),
                None => quote!(()),
            };
            let span = m.item.sig.span();
            // Generic parameters are an error the checks report; kept, so that the signature
            // raises no second one about a lifetime that would be undeclared without them.
            let generics = &m.item.sig.generics;
            let where_clause = &generics.where_clause;
            quote_spanned! {span=>
                #(#docs)*
                fn #name #generics(&self, #(#params),*)
                    -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
                    #where_clause;
            }
        });
        quote! {
            #(#attrs)*
            #vis trait #ident: ::core::marker::Send + ::core::marker::Sync + 'static #(+ #supertraits)* {
                #(#methods)*
            }
        }
    }
}
