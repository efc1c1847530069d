//! Stub impls emitted beside errors, so one mistake does not cascade into "trait not
//! implemented" errors wherever the type is used.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::{Container, Data};

pub(crate) fn message(cont: &Container<'_>) -> TokenStream {
    let krate = &cont.krate;
    let p = quote!(#krate::__private);
    let ident = cont.ident;
    let (impl_g, ty_g, where_c) = cont.generics.split_for_impl();
    let name = &cont.name;
    let message = match cont.data {
        Data::Enum(_) => quote!(),
        _ => quote! {
            impl #impl_g #p::Message for #ident #ty_g #where_c {
                const NAME: &'static str = #name;
            }
        },
    };
    quote! {
        const _: () = {
            impl #impl_g #p::Wire for #ident #ty_g #where_c {
                const TTYPE: #p::TType = #p::TType::Struct;
                fn encode(self, _: &mut #p::Encoder) -> #p::Result<(), #p::EncodeError> {
                    ::core::unreachable!()
                }
                fn decode(_: &mut #p::Decoder<'_>) -> #p::Result<Self, #p::DecodeError> {
                    ::core::unreachable!()
                }
                fn idl_type(_: &mut #p::Idl) -> #p::String {
                    ::core::unreachable!()
                }
            }
            #message
        };
    }
}
