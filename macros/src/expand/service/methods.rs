//! `{Trait}Method`: the service's methods as an enum, each knowing its wire name, so that a
//! hook or handler that checks which method a call is cannot be slipped past by a rename.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::Ident;

use super::ServiceGenerator;

/// `get_file` → `GetFile` (a raw identifier's `r#` dropped).
fn variant(method: &Ident) -> Ident {
    let name = syn::ext::IdentExt::unraw(method).to_string();
    let camel: String = name
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_uppercase().chain(chars).collect::<String>()
            })
        })
        .collect();
    format_ident!(
        "{}",
        if camel.is_empty() {
            "Method".to_owned()
        } else {
            camel
        },
        span = method.span()
    )
}

impl ServiceGenerator<'_> {
    pub(super) fn method_enum_ident(&self) -> Ident {
        format_ident!("{}Method", self.service.item.ident)
    }

    pub(super) fn method_enum(&self) -> TokenStream {
        let krate = self.krate;
        let (vis, t) = (&self.service.item.vis, &self.service.item.ident);
        let ident = self.method_enum_ident();
        let service = &self.service.name;
        let methods = &self.service.methods;
        let variants: Vec<Ident> = methods.iter().map(|m| variant(m.ident)).collect();
        let names = methods.iter().map(|m| &m.name);
        let docs = methods.iter().map(|m| {
            format!(
                "[`{t}::{}`], `{}` on the wire.",
                syn::ext::IdentExt::unraw(m.ident),
                m.name
            )
        });
        let doc = format!(
            "The methods of [`{t}`] (Thrift service `{service}`), each knowing its wire name.\n\n\
             Check which method a call is with [`{ident}::of`] rather than by comparing \
             [`Context::method`]({krate_doc}::Context::method) with a string: a method renamed \
             with `#[fdrpc(rename = \"...\")]` is still the same variant.",
            krate_doc = "fdrpc",
        );
        quote! {
            #[doc = #doc]
            #[derive(
                ::core::clone::Clone,
                ::core::marker::Copy,
                ::core::fmt::Debug,
                ::core::cmp::PartialEq,
                ::core::cmp::Eq,
                ::core::hash::Hash,
            )]
            #vis enum #ident {
                #(#[doc = #docs] #variants,)*
            }

            impl #ident {
                /// Every method, in declaration order.
                pub const ALL: &'static [Self] = &[#(Self::#variants),*];
                /// The Thrift name of the service.
                pub const SERVICE: &'static str = #service;

                /// The method's wire name: what [`Context::method`](#krate::Context::method)
                /// returns for a call of it.
                pub const fn name(self) -> &'static str {
                    match self {
                        #(Self::#variants => #names,)*
                    }
                }

                /// The method whose wire name is `name`, if the service has one.
                pub fn from_name(name: &str) -> ::core::option::Option<Self> {
                    Self::ALL.iter().copied().find(|m| m.name() == name)
                }

                /// The method the call `cx` is, if it is a call of this service.
                pub fn of(cx: &#krate::Context) -> ::core::option::Option<Self> {
                    if cx.service() == Self::SERVICE {
                        Self::from_name(cx.method())
                    } else {
                        ::core::option::Option::None
                    }
                }
            }

            impl ::core::fmt::Display for #ident {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.write_str(self.name())
                }
            }
        }
    }
}
