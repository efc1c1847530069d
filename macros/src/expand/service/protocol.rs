//! `{Trait}Protocol`: the service as a type, for `fdrpc::ClientEnd<{Trait}Protocol>` and
//! `fdrpc::ServerEnd<{Trait}Protocol>` (services as fields), with its `Protocol` and
//! `ServedBy` impls.

use proc_macro2::TokenStream;
use quote::quote;

use super::ServiceGenerator;

impl ServiceGenerator<'_> {
    pub(super) fn protocol_type(&self) -> TokenStream {
        let (vis, t, protocol) = (
            &self.service.item.vis,
            &self.service.item.ident,
            &self.protocol,
        );
        let doc = format!(
            "The protocol of [`{t}`]: names the service in `fdrpc::ClientEnd<{protocol}>` (becomes a [`{t}Client`] or [`{t}BlockingClient`]) and `fdrpc::ServerEnd<{protocol}>` (served with an implementation of [`{t}`]), which travel in messages; `fdrpc::endpoints::<{protocol}>()` makes a connected pair."
        );
        quote! {
            #[doc = #doc]
            #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::marker::Copy)]
            #vis struct #protocol;
        }
    }

    pub(super) fn protocol_impl(&self) -> TokenStream {
        let (krate, p) = (self.krate, &self.p);
        let t = &self.service.item.ident;
        let (protocol, client, blocking, server) =
            (&self.protocol, &self.client, &self.blocking, &self.server);
        let name = &self.service.name;
        quote! {
            impl #krate::Protocol for #protocol {
                const NAME: &'static str = #name;
                #p::if_tokio! {
                    type Client = #client;
                    fn client(client: #krate::Client) -> #client {
                        #client::new(client)
                    }
                }
                type BlockingClient = #blocking;
                fn blocking_client(client: #krate::BlockingClient) -> #blocking {
                    #blocking::new(client)
                }
                fn describe(__idl: &mut #p::Idl) {
                    __fdrpc_describe(__idl)
                }
            }

            impl<T: #t> #krate::ServedBy<T> for #protocol {
                type Server = #server<T>;
                fn server(implementation: T) -> #server<T> {
                    #server::new(implementation)
                }
            }
        }
    }
}
