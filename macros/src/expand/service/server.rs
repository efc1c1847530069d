//! The generated `{Trait}Server<T>`: routes calls to an implementation of the trait.

use proc_macro2::TokenStream;
use quote::quote;

use super::ServiceGenerator;
use crate::ast::service::Method;

impl ServiceGenerator<'_> {
    pub(super) fn server_type(&self) -> TokenStream {
        let (vis, t, server) = (
            &self.service.item.vis,
            &self.service.item.ident,
            &self.server,
        );
        let doc = format!(
            "Serves an implementation of [`{t}`]: hand it to `fdrpc::Server::serve` (tokio) or `fdrpc::BlockingServer::serve` (no async runtime)."
        );
        quote! {
            #[doc = #doc]
            #[derive(::core::fmt::Debug)]
            #vis struct #server<T> {
                service: ::std::sync::Arc<T>,
            }
        }
    }

    pub(super) fn server_impl(&self) -> TokenStream {
        let (krate, p) = (self.krate, &self.p);
        let t = &self.service.item.ident;
        let server = &self.server;
        let svc_name = &self.service.name;
        let arms = self.service.methods.iter().map(|m| self.dispatch_arm(m));
        let described = self.described(quote!(<T>), quote!(#server<T>));
        quote! {
            impl<T: #t> #server<T> {
                /// Serves `service`.
                pub fn new(service: T) -> Self {
                    Self { service: #p::Arc::new(service) }
                }

                /// Serves a shared `service`.
                pub fn from_arc(service: #p::Arc<T>) -> Self {
                    Self { service }
                }

                /// The implementation being served.
                pub fn get_ref(&self) -> &T {
                    &self.service
                }
            }

            impl<T> ::core::clone::Clone for #server<T> {
                fn clone(&self) -> Self {
                    Self { service: #p::Arc::clone(&self.service) }
                }
            }

            #described

            impl<T: #t> #krate::Service for #server<T> {
                fn name(&self) -> &'static str {
                    #svc_name
                }

                fn methods(&self) -> &'static [&'static str] {
                    __FDRPC_METHODS
                }

                fn describe(&self, __idl: &mut #p::Idl) {
                    __fdrpc_describe(__idl)
                }

                fn dispatch(&self, mut __call: #p::Incoming<'_>) -> #p::Dispatch {
                    match __call.method() {
                        #(#arms)*
                        _ => #p::Dispatch::UnknownMethod,
                    }
                }
            }
        }
    }

    /// The match arm that dispatches `m`.
    fn dispatch_arm(&self, m: &Method<'_>) -> TokenStream {
        let p = &self.p;
        let wire = &m.name;
        let ident = m.ident;
        let args = Self::args_ident(m);
        let names: Vec<_> = m.wire_params().map(|x| &x.ident).collect();
        let call_args = m.params.iter().map(|x| {
            if x.context.is_some() {
                quote!(&__cx)
            } else {
                let i = &x.ident;
                quote!(#i)
            }
        });
        let context = m
            .context()
            .map(|_| quote!(let __cx = __call.context(#wire);));
        // Every arm starts alike: its arguments decoded (or the call refused), the service and
        // context at hand.
        let prologue = quote! {
            let #args { #(#names),* } = match __call.decode_args::<#args>() {
                #p::Result::Ok(__a) => __a,
                #p::Result::Err(__e) => return #p::Dispatch::BadArgs(__e),
            };
            let __svc = #p::Arc::clone(&self.service);
            #context
        };
        let invoke = quote!(__svc.#ident(#(#call_args),*).await);
        if m.is_oneway() {
            return quote! {
                #wire => {
                    #prologue
                    #p::Dispatch::Oneway(#p::Box::pin(async move {
                        #invoke;
                    }))
                }
            };
        }
        let exc = self.exception(m);
        // The sink: opened when the call is dispatched, so the client gets its credit at once.
        let (open_sink, check_sink) = match m.sink().and_then(|x| x.stream.map(|st| (&x.ident, st)))
        {
            Some((i, st)) => {
                let (t, e) = (self.travels(st.item), self.stream_error_checked(st.error));
                (
                    quote!(let (#i, __sink_status) = __call.open_sink::<#t, #e>(#wire);),
                    quote!(__sink_status.check()?;),
                )
            }
            None => (quote!(), quote!()),
        };
        let encode = |outcome: TokenStream| match m.ret.value {
            Some(t) => {
                let t = self.travels(t);
                quote!(#p::encode_result::<#t, #exc>(&mut __enc, #outcome)?;)
            }
            None => quote!(#p::encode_void_result::<#exc>(&mut __enc, #outcome)?;),
        };
        let Some(st) = m.ret.stream else {
            // The hooks learn whether the result is the declared exception.
            let (failed, encode) = if m.ret.exception.is_some() {
                (quote!(__ret.is_err()), encode(quote!(__ret)))
            } else {
                (quote!(false), encode(quote!(#p::Result::Ok(__ret))))
            };
            return quote! {
                #wire => {
                    #prologue
                    #open_sink
                    // The encoder is made once the handler has its result: a handler that
                    // waits keeps 24 bytes meanwhile, not an encoder with its buffer.
                    let __reply = __call.reply_to(#wire);
                    #p::Dispatch::Reply(#p::Box::pin(async move {
                        let __ret = #invoke;
                        #check_sink
                        let __failed = #failed;
                        let mut __enc = __reply.encoder();
                        #encode
                        #p::Result::Ok(#p::HandlerReply::new(__enc, __failed))
                    }))
                }
            };
        };
        let (t, e) = (self.travels(st.item), self.stream_error_checked(st.error));
        // The opening reply: empty, or the first response as field 0.
        let (pattern, first) = match m.ret.value {
            Some(_) => (quote!((__first, __s)), quote!(__first)),
            None => (quote!(__s), quote!(())),
        };
        let open = encode(quote!(#p::Result::Ok(#first)));
        let opened = quote! {
            #open
            #p::Result::Ok((__enc, #p::Option::Some(#p::producer::<#t, #e>(__s))))
        };
        let reply = if m.ret.exception.is_some() {
            let refuse = encode(quote!(#p::Result::Err(__x)));
            quote! {
                match __ret {
                    #p::Result::Ok(#pattern) => { #opened }
                    #p::Result::Err(__x) => {
                        #refuse
                        #p::Result::Ok((__enc, #p::Option::None))
                    }
                }
            }
        } else {
            quote! {
                let #pattern = __ret;
                #opened
            }
        };
        quote! {
            #wire => {
                #prologue
                #open_sink
                let __slot = __call.open_stream(#wire);
                let __reply = __call.reply_to(#wire);
                #p::Dispatch::Stream(__slot, #p::Box::pin(async move {
                    let __ret = #invoke;
                    let mut __enc = __reply.encoder();
                    #reply
                }))
            }
        }
    }
}
