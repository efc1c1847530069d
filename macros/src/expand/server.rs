//! The generated `{Trait}Server<T>`: routes calls to an implementation of the trait.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::service::{Method, Service};
use crate::expand::service::{args_ident, private};

fn name(service: &Service<'_>) -> syn::Ident {
    format_ident!("{}Server", service.item.ident)
}

pub(crate) fn server_type(service: &Service<'_>) -> TokenStream {
    let vis = &service.item.vis;
    let t = &service.item.ident;
    let server = name(service);
    let doc = format!("Serves an implementation of [`{t}`]: hand it to `fdrpc::Server::serve`.");
    quote! {
        #[doc = #doc]
        #[derive(::core::fmt::Debug)]
        #vis struct #server<T> {
            service: ::std::sync::Arc<T>,
        }
    }
}

fn arm(service: &Service<'_>, m: &Method<'_>) -> TokenStream {
    let p = private(service);
    let wire = &m.name;
    let ident = m.ident;
    let args = args_ident(m);
    let names: Vec<_> = m.wire_params().map(|p| p.ident).collect();
    let call_args = m.params.iter().map(|param| {
        if param.is_context {
            quote!(&__cx)
        } else {
            let i = param.ident;
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
    if m.oneway.is_some() {
        return quote! {
            #wire => {
                #prologue
                #p::Dispatch::Oneway(#p::Box::pin(async move {
                    #invoke;
                }))
            }
        };
    }
    let exc = match m.ret.exception {
        Some(e) => quote!(#e),
        None => quote!(#p::Infallible),
    };
    // The sink: opened when the call is dispatched, so the client gets its credit at once.
    let (open_sink, check_sink) = match m.sink() {
        Some(param) => {
            let i = param.ident;
            let st = param.stream.expect("sink parameters are streams");
            let (t, e) = (st.item, stream_error(&p, st.error));
            (
                quote!(let (#i, __sink_status) = __call.open_sink::<#t, #e>(#wire);),
                quote!(__sink_status.check()?;),
            )
        }
        None => (quote!(), quote!()),
    };
    if let Some(st) = m.ret.stream {
        let (t, e) = (st.item, stream_error(&p, st.error));
        // The opening reply: empty, or the first response as field 0.
        let (pattern, open) = match m.ret.value {
            Some(first) => (
                quote!((__first, __s)),
                quote!(#p::encode_result::<#first, #exc>(&mut __enc, #p::Result::Ok(__first))?;),
            ),
            None => (
                quote!(__s),
                quote!(#p::encode_void_result::<#exc>(&mut __enc, #p::Result::Ok(()))?;),
            ),
        };
        let refuse = match m.ret.value {
            Some(first) => {
                quote!(#p::encode_result::<#first, #exc>(&mut __enc, #p::Result::Err(__x))?;)
            }
            None => quote!(#p::encode_void_result::<#exc>(&mut __enc, #p::Result::Err(__x))?;),
        };
        let reply = if m.ret.exception.is_some() {
            quote! {
                match __ret {
                    #p::Result::Ok(#pattern) => {
                        #open
                        #p::Result::Ok((__enc, #p::Option::Some(#p::producer::<#t, #e>(__s))))
                    }
                    #p::Result::Err(__x) => {
                        #refuse
                        #p::Result::Ok((__enc, #p::Option::None))
                    }
                }
            }
        } else {
            quote! {
                let #pattern = __ret;
                #open
                #p::Result::Ok((__enc, #p::Option::Some(#p::producer::<#t, #e>(__s))))
            }
        };
        return quote! {
            #wire => {
                #prologue
                #open_sink
                let __slot = __call.open_stream(#wire);
                let mut __enc = __call.reply_encoder(#wire);
                #p::Dispatch::Stream(__slot, #p::Box::pin(async move {
                    let __ret = #invoke;
                    #reply
                }))
            }
        };
    }
    let encode = match (m.ret.value, m.ret.exception.is_some()) {
        (Some(t), true) => quote!(#p::encode_result::<#t, #exc>(&mut __enc, __ret)?),
        (Some(t), false) => {
            quote!(#p::encode_result::<#t, #exc>(&mut __enc, #p::Result::Ok(__ret))?)
        }
        (None, true) => quote!(#p::encode_void_result::<#exc>(&mut __enc, __ret)?),
        (None, false) => quote!({
            let () = __ret;
            #p::encode_void_result::<#exc>(&mut __enc, #p::Result::Ok(()))?
        }),
    };
    quote! {
        #wire => {
            #prologue
            #open_sink
            let mut __enc = __call.reply_encoder(#wire);
            #p::Dispatch::Reply(#p::Box::pin(async move {
                let __ret = #invoke;
                #check_sink
                #encode;
                #p::Result::Ok(__enc)
            }))
        }
    }
}

/// The error type of a stream: as declared, or `Infallible`.
pub(crate) fn stream_error(p: &TokenStream, error: Option<&syn::Type>) -> TokenStream {
    match error {
        Some(e) => quote!(#e),
        None => quote!(#p::Infallible),
    }
}

pub(crate) fn server_impl(service: &Service<'_>) -> TokenStream {
    let krate = &service.krate;
    let p = private(service);
    let t = &service.item.ident;
    let server = name(service);
    let svc_name = &service.name;
    let arms = service.methods.iter().map(|m| arm(service, m));
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

        impl<T: #t> #krate::Service for #server<T> {
            fn name(&self) -> &'static str {
                #svc_name
            }

            fn idl(&self) -> #p::String {
                __fdrpc_idl()
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
