//! The Thrift `{method}_args` struct of each method: parameter n (not counting the context or
//! the sink) is field n, unless it says `#[fdrpc(id = N)]`. The ids are written out on every
//! field, so the derive never numbers the fields itself: the struct, the IDL and the
//! documentation share one numbering, the parser's.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::ServiceGenerator;
use crate::ast::service::{Method, Param};

impl ServiceGenerator<'_> {
    pub(super) fn args_structs(&self) -> TokenStream {
        self.service
            .methods
            .iter()
            .map(|m| self.args_struct(m))
            .collect()
    }

    fn args_struct(&self, m: &Method<'_>) -> TokenStream {
        let (krate, p) = (self.krate, &self.p);
        let ident = Self::args_ident(m);
        let wire_name = format!("{}_args", m.name);
        let fields = m.wire_params().map(field);
        let wire = &m.name;
        let reserved = format!(
            "the wire name `{wire}` is a reserved word in Thrift IDL; give the method another one with #[fdrpc(rename = \"...\")]"
        );
        let reserved_check = quote_spanned! {m.name_span=>
            const _: () = if #p::is_reserved(#wire) {
                ::core::panic!(#reserved)
            };
        };
        quote! {
            #[derive(#krate::Message)]
            #[fdrpc(crate = #krate, rename = #wire_name)]
            struct #ident {
                #(#fields,)*
            }
            #reserved_check
        }
    }
}

/// One field: the parameter's name and type, its id, and what else it said about itself.
fn field(param: &Param<'_>) -> TokenStream {
    let (i, t) = (&param.ident, param.ty);
    let mut id = proc_macro2::Literal::i64_unsuffixed(param.id);
    id.set_span(param.id_span);
    let name = &param.wire_name;
    let binary = param.binary.then(|| quote!(#[fdrpc(binary)]));
    let fd = param.fd.then(|| quote!(#[fdrpc(fd)]));
    quote_spanned! {param.id_span=>
        #[fdrpc(id = #id, rename = #name)]
        #binary
        #fd
        #i: #t
    }
}
