//! The generated `{Trait}Client` (async) and `{Trait}BlockingClient`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::service::{Method, Service};
use crate::expand::server::stream_error;
use crate::expand::service::{args_ident, decode_reply, private};

fn names(service: &Service<'_>) -> (syn::Ident, syn::Ident) {
    let t = &service.item.ident;
    (
        format_ident!("{}Client", t),
        format_ident!("{}BlockingClient", t),
    )
}

pub(crate) fn types(service: &Service<'_>) -> TokenStream {
    let krate = &service.krate;
    let vis = &service.item.vis;
    let t = &service.item.ident;
    let (client, blocking) = names(service);
    let doc = format!(
        "The async client of [`{t}`]: one connection, many calls in flight, fds in both directions.\n\nCheap to clone; the connection closes with the last clone."
    );
    let bdoc = format!(
        "The blocking client of [`{t}`], for plain threads (no async runtime): each call waits for its reply on the calling thread."
    );
    quote! {
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #client {
            inner: #krate::Client,
        }

        #[doc = #bdoc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #blocking {
            inner: #krate::BlockingClient,
        }
    }
}

/// The return type and the tail of a generated client method.
fn outcome(service: &Service<'_>, m: &Method<'_>) -> (TokenStream, TokenStream) {
    let krate = &service.krate;
    let p = private(service);
    let value = match m.ret.value {
        Some(t) => quote!(#t),
        None => quote!(()),
    };
    match m.ret.exception {
        Some(e) => (
            quote!(#p::Result<#value, #krate::CallError<#e>>),
            quote! {
                match __r {
                    #p::Result::Ok(#p::Result::Ok(__v)) => #p::Result::Ok(__v),
                    #p::Result::Ok(#p::Result::Err(__e)) => #p::Result::Err(#krate::CallError::Service(__e)),
                    #p::Result::Err(__e) => #p::Result::Err(#krate::CallError::Rpc(__e)),
                }
            },
        ),
        None => (
            quote!(#p::Result<#value, #krate::RpcError>),
            quote! {
                match __r {
                    #p::Result::Ok(#p::Result::Ok(__v)) => #p::Result::Ok(__v),
                    #p::Result::Ok(#p::Result::Err(__never)) => match __never {},
                    #p::Result::Err(__e) => #p::Result::Err(__e),
                }
            },
        ),
    }
}

/// Client methods of a method with a sink or a stream: (async, blocking).
fn stream_methods(
    service: &Service<'_>,
    m: &Method<'_>,
    params: &[TokenStream],
    build: &TokenStream,
) -> (TokenStream, TokenStream) {
    let krate = &service.krate;
    let p = private(service);
    let docs = method_docs(m);
    let ident = m.ident;
    let wire = &m.name;
    // The sink argument: a `Stream` for the async client, an iterator for the blocking one.
    let (sink_expr, blocking_params, blocking_sink) = match m.sink() {
        Some(param) => {
            let i = param.ident;
            let st = param.stream.expect("sink parameters are streams");
            let (t, e) = (st.item, stream_error(&p, st.error));
            let iter_item = match st.error {
                Some(e) => quote!(#p::Result<#t, #e>),
                None => quote!(#t),
            };
            let to_results = match st.error {
                Some(_) => quote!(#i.into_iter()),
                None => quote!(#i.into_iter().map(#p::Result::<#t, #p::Infallible>::Ok)),
            };
            let blocking_params: Vec<TokenStream> = m
                .params
                .iter()
                .filter(|x| !x.is_context)
                .map(|x| {
                    let (xi, xt) = (x.ident, x.ty);
                    if x.stream.is_some() {
                        quote!(#xi: impl ::core::iter::IntoIterator<Item = #iter_item, IntoIter: ::core::marker::Send + 'static>)
                    } else {
                        quote!(#xi: #xt)
                    }
                })
                .collect();
            (
                quote!(#p::producer::<#t, #e>(#i)),
                blocking_params,
                quote!(#p::BlockingSink::<#t, #e>::new(#to_results)),
            )
        }
        None => (quote!(), params.to_vec(), quote!()),
    };
    let exc = match m.ret.exception {
        Some(e) => quote!(#e),
        None => quote!(#p::Infallible),
    };
    let has_exc = m.ret.exception.is_some();
    let stream_types = m.ret.stream.map(|st| (st.item, stream_error(&p, st.error)));
    let (ok_ty, blocking_ok_ty) = match (&stream_types, m.ret.value) {
        (Some((t, e)), Some(first)) => (
            quote!((#first, #krate::Streaming<#t, #e>)),
            quote!((#first, #krate::BlockingStreaming<#t, #e>)),
        ),
        (Some((t, e)), None) => (
            quote!(#krate::Streaming<#t, #e>),
            quote!(#krate::BlockingStreaming<#t, #e>),
        ),
        (None, Some(v)) => (quote!(#v), quote!(#v)),
        (None, None) => (quote!(()), quote!(())),
    };
    let (ret, blocking_ret, tail) = match m.ret.exception {
        Some(e) => (
            quote!(#p::Result<#ok_ty, #krate::CallError<#e>>),
            quote!(#p::Result<#blocking_ok_ty, #krate::CallError<#e>>),
            quote! {
                match __r {
                    #p::Result::Ok(#p::Result::Ok(__v)) => #p::Result::Ok(__v),
                    #p::Result::Ok(#p::Result::Err(__e)) => #p::Result::Err(#krate::CallError::Service(__e)),
                    #p::Result::Err(__e) => #p::Result::Err(#krate::CallError::Rpc(__e)),
                }
            },
        ),
        None => (
            quote!(#p::Result<#ok_ty, #krate::RpcError>),
            quote!(#p::Result<#blocking_ok_ty, #krate::RpcError>),
            quote! {
                match __r {
                    #p::Result::Ok(#p::Result::Ok(__v)) => #p::Result::Ok(__v),
                    #p::Result::Ok(#p::Result::Err(__never)) => match __never {},
                    #p::Result::Err(__e) => #p::Result::Err(__e),
                }
            },
        ),
    };
    if let Some((t, e)) = stream_types {
        // The opening reply: nothing, or the first response.
        let (decode_open, join) = match m.ret.value {
            Some(first) => (
                quote!(|__d| #p::decode_result::<#first, #exc>(__d, #has_exc)),
                quote!(|__first| (__first, __s)),
            ),
            None => (
                quote!(|__d| #p::decode_void_result::<#exc>(__d, #has_exc)),
                quote!(|()| __s),
            ),
        };
        let async_sink_opt = if m.sink().is_some() {
            quote!(#p::Option::Some(#sink_expr))
        } else {
            quote!(#p::Option::None)
        };
        let _ = &blocking_sink;
        let async_m = quote! {
            #(#docs)*
            pub async fn #ident(&self, #(#params),*) -> #ret {
                let __r = self
                    .inner
                    .call_streaming::<_, _, #t, #e>(#wire, #build, #decode_open, #async_sink_opt)
                    .await
                    .map(|(__init, __s)| __init.map(#join));
                #tail
            }
        };
        let blocking_m = quote! {
            #(#docs)*
            pub fn #ident(&self, #(#blocking_params),*) -> #blocking_ret {
                let __r = self
                    .inner
                    .call_streaming::<_, _, #t, #e>(#wire, #build, #decode_open, #p::Option::None)
                    .map(|(__init, __s)| __init.map(#join));
                #tail
            }
        };
        // A stream both ways needs both directions driven at once: async client only.
        if m.sink().is_some() {
            return (async_m, quote!());
        }
        return (async_m, blocking_m);
    }
    let decode = decode_reply(service, m);
    // No stream back: the method has a sink.
    let async_m = quote! {
        #(#docs)*
        pub async fn #ident(&self, #(#params),*) -> #ret {
            let __r = self.inner.call_with_sink(#wire, #build, #sink_expr, #decode).await;
            #tail
        }
    };
    let blocking_m = quote! {
        #(#docs)*
        pub fn #ident(&self, #(#blocking_params),*) -> #blocking_ret {
            let __r = self.inner.call_with_sink(#wire, #build, #blocking_sink, #decode);
            #tail
        }
    };
    (async_m, blocking_m)
}

pub(crate) fn impls(service: &Service<'_>) -> TokenStream {
    let krate = &service.krate;
    let p = private(service);
    let (client, blocking) = names(service);
    let t = &service.item.ident;
    let mut async_methods = Vec::new();
    let mut blocking_methods = Vec::new();
    for m in &service.methods {
        let docs = method_docs(m);
        let ident = m.ident;
        let wire = &m.name;
        let args = args_ident(m);
        let params: Vec<_> = m
            .wire_params()
            .map(|p| {
                let (i, t) = (p.ident, p.ty);
                quote!(#i: #t)
            })
            .collect();
        let names: Vec<_> = m.wire_params().map(|p| p.ident).collect();
        let build = quote!(#args { #(#names),* });
        if m.oneway.is_some() {
            async_methods.push(quote! {
                #(#docs)*
                ///
                /// Oneway: returns once the call is queued; no reply comes back.
                pub async fn #ident(&self, #(#params),*) -> #p::Result<(), #krate::RpcError> {
                    self.inner.oneway(#wire, #build)
                }
            });
            blocking_methods.push(quote! {
                #(#docs)*
                ///
                /// Oneway: returns once the call is written; no reply comes back.
                pub fn #ident(&self, #(#params),*) -> #p::Result<(), #krate::RpcError> {
                    self.inner.oneway(#wire, #build)
                }
            });
            continue;
        }
        if m.sink().is_some() || m.ret.stream.is_some() {
            // The sink parameter is a parameter of the client method too.
            let params: Vec<_> = m
                .params
                .iter()
                .filter(|p| !p.is_context)
                .map(|p| {
                    let (i, t) = (p.ident, p.ty);
                    quote!(#i: #t)
                })
                .collect();
            let (a, b) = stream_methods(service, m, &params, &build);
            async_methods.push(a);
            blocking_methods.push(b);
            continue;
        }
        let decode = decode_reply(service, m);
        let (ret, tail) = outcome(service, m);
        async_methods.push(quote! {
            #(#docs)*
            pub async fn #ident(&self, #(#params),*) -> #ret {
                let __r = self.inner.call(#wire, #build, #decode).await;
                #tail
            }
        });
        blocking_methods.push(quote! {
            #(#docs)*
            pub fn #ident(&self, #(#params),*) -> #ret {
                let __r = self.inner.call(#wire, #build, #decode);
                #tail
            }
        });
    }
    let connect_doc = format!("Connects to a server of [`{t}`] listening at `path`.");
    quote! {
        impl #client {
            #[doc = #connect_doc]
            ///
            /// # Errors
            ///
            /// The error of `connect`.
            pub async fn connect(path: impl ::core::convert::AsRef<::std::path::Path>) -> ::std::io::Result<Self> {
                #p::Result::Ok(Self::new(#krate::Client::connect(path).await?))
            }

            /// A client over an existing connection.
            pub fn new(client: #krate::Client) -> Self {
                Self { inner: client }
            }

            /// A client over an already-connected std stream.
            ///
            /// # Errors
            ///
            /// The error of registering the stream with the tokio runtime.
            pub fn from_std(stream: ::std::os::unix::net::UnixStream) -> ::std::io::Result<Self> {
                #p::Result::Ok(Self::new(#krate::Client::from_std(stream)?))
            }

            /// A handle to the same connection whose calls time out after `timeout`.
            pub fn with_timeout(&self, timeout: ::std::time::Duration) -> Self {
                Self { inner: self.inner.with_timeout(timeout) }
            }

            /// The untyped client underneath.
            pub fn client(&self) -> &#krate::Client {
                &self.inner
            }

            /// The Apache Thrift IDL of this service and every type it uses.
            pub fn idl() -> #p::String {
                __fdrpc_idl()
            }

            #(#async_methods)*
        }

        impl #blocking {
            #[doc = #connect_doc]
            ///
            /// # Errors
            ///
            /// The error of `connect`.
            pub fn connect(path: impl ::core::convert::AsRef<::std::path::Path>) -> ::std::io::Result<Self> {
                #p::Result::Ok(Self::new(#krate::BlockingClient::connect(path)?))
            }

            /// A client over an existing connection.
            pub fn new(client: #krate::BlockingClient) -> Self {
                Self { inner: client }
            }

            /// A client over an already-connected std stream.
            pub fn from_std(stream: ::std::os::unix::net::UnixStream) -> Self {
                Self::new(#krate::BlockingClient::new(stream))
            }

            /// A handle to the same connection whose calls time out after `timeout`.
            pub fn with_timeout(&self, timeout: ::std::time::Duration) -> Self {
                Self { inner: self.inner.with_timeout(timeout) }
            }

            /// The untyped client underneath.
            pub fn client(&self) -> &#krate::BlockingClient {
                &self.inner
            }

            #(#blocking_methods)*
        }
    }
}

/// The method's doc comments (and other attributes), or a line naming the call, so that a
/// crate denying `missing_docs` accepts the generated clients.
fn method_docs(m: &Method<'_>) -> Vec<TokenStream> {
    let has_doc = m.docs.iter().any(|a| a.path().is_ident("doc"));
    let mut out: Vec<TokenStream> = m.docs.iter().map(|a| quote!(#a)).collect();
    if !has_doc {
        let line = format!("Calls `{}`.", m.name);
        out.insert(0, quote!(#[doc = #line]));
    }
    out
}
