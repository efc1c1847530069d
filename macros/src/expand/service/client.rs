//! The generated `{Trait}Client` (async) and `{Trait}BlockingClient`: one method per service
//! method, plus the items of [`CLIENT_ITEMS`].

use proc_macro2::TokenStream;
use quote::quote;
use syn::Type;

use super::ServiceGenerator;
use crate::ast::service::Method;

/// What a service method named like a client item does to it.
pub(crate) enum Clash {
    /// The client cannot do without the item: the method must be renamed. Says what the item
    /// is.
    Refuse(&'static str),
    /// The item is a convenience: the method takes the name and the item is left out.
    Yield,
}

/// The items both generated clients have besides the service's methods, by name. The
/// generator emits exactly these ([`ServiceGenerator::client_item`]), and the checks refuse
/// methods by this list, so the two cannot drift apart.
const CLIENT_ITEMS: &[(&str, Clash)] = &[
    (
        "connect",
        Clash::Refuse("its constructor from a socket path"),
    ),
    (
        "new",
        Clash::Refuse("its constructor from an untyped client"),
    ),
    (
        "multiplexed",
        Clash::Refuse("its constructor for a server of several services"),
    ),
    (
        "from_std",
        Clash::Refuse("its constructor from a std stream"),
    ),
    ("with_timeout", Clash::Refuse("its handle with a timeout")),
    (
        "without_timeout",
        Clash::Refuse("its handle without a timeout"),
    ),
    ("client", Clash::Refuse("the untyped client underneath")),
    ("closed", Clash::Yield),
    ("idl", Clash::Yield),
];

/// What a method named `name` does to the generated clients, if it is one of their items.
pub(crate) fn client_item(name: &str) -> Option<&'static Clash> {
    CLIENT_ITEMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| c)
}

impl ServiceGenerator<'_> {
    fn has_method(&self, name: &str) -> bool {
        self.service
            .methods
            .iter()
            .any(|m| syn::ext::IdentExt::unraw(m.ident) == name)
    }

    /// The client items, but those a service method took the name of.
    fn client_items(&self, blocking: bool) -> TokenStream {
        CLIENT_ITEMS
            .iter()
            .filter(|(name, clash)| !(matches!(clash, Clash::Yield) && self.has_method(name)))
            .map(|(name, _)| self.client_item(name, blocking))
            .collect()
    }

    /// The client item `name` of the async or blocking client.
    pub(super) fn client_item(&self, name: &str, blocking: bool) -> TokenStream {
        let (krate, p) = (self.krate, &self.p);
        let t = &self.service.item.ident;
        let untyped = if blocking {
            quote!(#krate::BlockingClient)
        } else {
            quote!(#krate::Client)
        };
        let connect_doc = format!("Connects to a server of [`{t}`] listening at `path`.");
        match name {
            "connect" if blocking => quote! {
                #[doc = #connect_doc]
                ///
                /// # Errors
                ///
                /// The error of `connect`.
                pub fn connect(path: impl ::core::convert::AsRef<::std::path::Path>) -> ::std::io::Result<Self> {
                    #p::Result::Ok(Self::new(#untyped::connect(path)?))
                }
            },
            "connect" => quote! {
                #[doc = #connect_doc]
                ///
                /// # Errors
                ///
                /// The error of `connect`.
                pub async fn connect(path: impl ::core::convert::AsRef<::std::path::Path>) -> ::std::io::Result<Self> {
                    #p::Result::Ok(Self::new(#untyped::connect(path).await?))
                }
            },
            "new" => quote! {
                /// A client over an existing connection (which other clients may share). Its
                /// calls name their methods plainly, as a server of one service takes them.
                pub fn new(client: #untyped) -> Self {
                    Self { inner: client, multiplexed: false }
                }
            },
            "multiplexed" => {
                let doc = format!(
                    "A client over an existing connection to a server of several services: its calls name their methods `{}:method`, as Apache Thrift's `TMultiplexedProtocol` does. Clients of other services may share the connection.",
                    self.service.name
                );
                quote! {
                    #[doc = #doc]
                    pub fn multiplexed(client: #untyped) -> Self {
                        Self { inner: client, multiplexed: true }
                    }
                }
            }
            "from_std" if blocking => quote! {
                /// A client over an already-connected std stream.
                pub fn from_std(stream: ::std::os::unix::net::UnixStream) -> Self {
                    Self::new(#untyped::new(stream))
                }
            },
            "from_std" => quote! {
                /// A client over an already-connected std stream.
                ///
                /// # Errors
                ///
                /// The error of registering the stream with the tokio runtime.
                pub fn from_std(stream: ::std::os::unix::net::UnixStream) -> ::std::io::Result<Self> {
                    #p::Result::Ok(Self::new(#untyped::from_std(stream)?))
                }
            },
            "with_timeout" => quote! {
                /// A handle to the same connection whose calls time out after `timeout`; the
                /// server learns it with each call and drops a handler that outlives it.
                pub fn with_timeout(&self, timeout: ::std::time::Duration) -> Self {
                    Self { inner: self.inner.with_timeout(timeout), multiplexed: self.multiplexed }
                }
            },
            "without_timeout" => quote! {
                /// A handle to the same connection whose calls wait for their replies as long
                /// as it takes, for calls that legitimately run long.
                pub fn without_timeout(&self) -> Self {
                    Self { inner: self.inner.without_timeout(), multiplexed: self.multiplexed }
                }
            },
            "client" => quote! {
                /// The untyped client underneath.
                pub fn client(&self) -> &#untyped {
                    &self.inner
                }
            },
            "closed" if blocking => quote! {
                /// Blocks until the server closes the connection (or it fails) and returns
                /// why: the death notification of a service. Calls on other threads go on
                /// meanwhile.
                pub fn closed(&self) -> #krate::ConnectionError {
                    self.inner.closed()
                }
            },
            "closed" => quote! {
                /// Waits until the server closes the connection (or it fails) and returns
                /// why: the death notification of a service. Calls go on meanwhile.
                pub async fn closed(&self) -> #krate::ConnectionError {
                    self.inner.closed().await
                }
            },
            "idl" => quote! {
                /// The Apache Thrift IDL of this service and every type it uses (also
                /// `<Self as fdrpc::Described>::idl()`).
                pub fn idl() -> #p::String {
                    __fdrpc_idl()
                }
            },
            _ => quote!(),
        }
    }

    pub(super) fn async_client_type(&self) -> TokenStream {
        let krate = self.krate;
        let (vis, t, client) = (
            &self.service.item.vis,
            &self.service.item.ident,
            &self.client,
        );
        let doc = format!(
            "The async client of [`{t}`]: one connection, many calls in flight, fds in both directions.\n\nCheap to clone; the connection closes with the last clone."
        );
        quote! {
            #[doc = #doc]
            #[derive(::core::clone::Clone, ::core::fmt::Debug)]
            #vis struct #client {
                inner: #krate::Client,
                multiplexed: bool,
            }
        }
    }

    pub(super) fn blocking_client_type(&self) -> TokenStream {
        let krate = self.krate;
        let (vis, t, blocking) = (
            &self.service.item.vis,
            &self.service.item.ident,
            &self.blocking,
        );
        let doc = format!(
            "The blocking client of [`{t}`], for plain threads (no async runtime): each call waits for its reply on the calling thread, and clones on other threads have theirs in flight at the same time."
        );
        quote! {
            #[doc = #doc]
            #[derive(::core::clone::Clone, ::core::fmt::Debug)]
            #vis struct #blocking {
                inner: #krate::BlockingClient,
                multiplexed: bool,
            }
        }
    }

    pub(super) fn async_client_impl(&self) -> TokenStream {
        let client = &self.client;
        let items = self.client_items(false);
        let methods = self
            .service
            .methods
            .iter()
            .map(|m| self.client_method(m, false));
        let described = self.described(quote!(), quote!(#client));
        quote! {
            impl #client {
                #items
                #(#methods)*
            }
            #described
        }
    }

    pub(super) fn blocking_client_impl(&self) -> TokenStream {
        let blocking = &self.blocking;
        let items = self.client_items(true);
        let methods = self
            .service
            .methods
            .iter()
            .map(|m| self.client_method(m, true));
        let described = self.described(quote!(), quote!(#blocking));
        quote! {
            impl #blocking {
                #items
                #(#methods)*
            }
            #described
        }
    }

    /// `impl #generics fdrpc::Described for #ty`.
    pub(super) fn described(&self, generics: TokenStream, ty: TokenStream) -> TokenStream {
        let krate = self.krate;
        let name = &self.service.name;
        quote! {
            impl #generics #krate::Described for #ty {
                const NAME: &'static str = #name;
                fn idl() -> ::std::string::String {
                    __fdrpc_idl()
                }
            }
        }
    }

    /// The client method of `m`.
    fn client_method(&self, m: &Method<'_>, blocking: bool) -> TokenStream {
        let p = &self.p;
        let docs = method_docs(m);
        let ident = m.ident;
        let (plain, mux) = (&m.name, format!("{}:{}", self.service.name, m.name));
        let wire = quote!(if self.multiplexed { #mux } else { #plain });
        let args = Self::args_ident(m);
        let names = m.wire_params().map(|x| &x.ident);
        let build = quote!(#args { #(#names),* });
        let params = m.client_params().map(|x| {
            let (i, t) = (&x.ident, x.ty);
            match (&x.stream, blocking) {
                (Some(st), true) => {
                    let item = match st.error {
                        Some(e) => {
                            let t = st.item;
                            quote!(#p::Result<#t, #e>)
                        }
                        None => {
                            let t = st.item;
                            quote!(#t)
                        }
                    };
                    quote!(#i: impl ::core::iter::IntoIterator<Item = #item, IntoIter: ::core::marker::Send + 'static>)
                }
                _ => quote!(#i: #t),
            }
        });
        let (asyncness, dot_await) = if blocking {
            (quote!(), quote!())
        } else {
            (quote!(async), quote!(.await))
        };
        let sections = call_sections(m, blocking);
        if m.is_oneway() {
            let krate = self.krate;
            // The async client waits (within the handle's timeout) while its send queue is
            // over its bound; the blocking one writes before it returns.
            let send = if blocking {
                quote!(self.inner.oneway(#wire, #build))
            } else {
                quote!(self.inner.oneway_when_room(#wire, #build).await)
            };
            return quote! {
                #(#docs)*
                #(#sections)*
                pub #asyncness fn #ident(&self, #(#params),*) -> #p::Result<(), #krate::RpcError> {
                    #send
                }
            };
        }
        let ret = self.client_return(m, blocking);
        let sink = m.sink().and_then(|x| x.stream.map(|st| (&x.ident, st)));
        let call = match (m.ret.stream, sink) {
            (None, None) => {
                let decode = self.decode_result(m, m.ret.value);
                quote!(self.inner.call(#wire, #build, #decode)#dot_await)
            }
            (None, Some((i, st))) => {
                let sink = self.sink_arg(i, st.item, st.error, blocking);
                let decode = self.decode_result(m, m.ret.value);
                quote!(self.inner.call_with_sink(#wire, #build, #decode, #sink)#dot_await)
            }
            (Some(out), sink) => {
                let (t, e) = (self.travels(out.item), self.stream_error_checked(out.error));
                // The opening reply: nothing, or the first response.
                let decode_open = self.decode_result(m, m.ret.value);
                let join = match m.ret.value {
                    Some(_) => quote!(|__first| (__first, __s)),
                    None => quote!(|()| __s),
                };
                let sink = match sink {
                    Some((i, st)) => {
                        let arg = self.sink_arg(i, st.item, st.error, blocking);
                        quote!(#p::Option::Some(#arg))
                    }
                    None => quote!(#p::Option::None),
                };
                // The same type parameters for both clients: the sink's types are erased.
                let types = quote!(_, _, #t, #e);
                quote! {
                    self.inner
                        .call_streaming::<#types>(#wire, #build, #decode_open, #sink)
                        #dot_await
                        .map(|(__init, __s)| __init.map(#join))
                }
            }
        };
        let flatten = match m.ret.exception {
            Some(_) => quote!(#p::flatten_declared),
            None => quote!(#p::flatten_undeclared),
        };
        quote! {
            #(#docs)*
            #(#sections)*
            pub #asyncness fn #ident(&self, #(#params),*) -> #ret {
                #flatten(#call)
            }
        }
    }

    /// The sink argument a client method passes on: a `Stream` for the async client, an
    /// iterator for the blocking one.
    fn sink_arg(
        &self,
        ident: &syn::Ident,
        item: &Type,
        error: Option<&Type>,
        blocking: bool,
    ) -> TokenStream {
        let p = &self.p;
        let e = self.stream_error_checked(error);
        let item = &self.travels(item);
        if !blocking {
            return quote!(#p::producer::<#item, #e>(#ident));
        }
        let results = match error {
            Some(_) => quote!(#ident.into_iter()),
            None => quote!(#ident.into_iter().map(#p::Result::<#item, #p::Infallible>::Ok)),
        };
        quote!(#p::BlockingSink::new::<#item, #e>(#results))
    }

    /// What a client method returns.
    fn client_return(&self, m: &Method<'_>, blocking: bool) -> TokenStream {
        let (krate, p) = (self.krate, &self.p);
        let value = match m.ret.value {
            Some(t) => quote!(#t),
            None => quote!(()),
        };
        let ok = match m.ret.stream {
            Some(st) => {
                let (t, e) = (st.item, self.stream_error(st.error));
                let stream = if blocking {
                    quote!(#krate::BlockingStreaming<#t, #e>)
                } else {
                    quote!(#krate::Streaming<#t, #e>)
                };
                match m.ret.value {
                    Some(first) => quote!((#first, #stream)),
                    None => stream,
                }
            }
            None => value,
        };
        match m.ret.exception {
            Some(e) => quote!(#p::Result<#ok, #krate::CallError<#e>>),
            None => quote!(#p::Result<#ok, #krate::RpcError>),
        }
    }
}

/// The sections every generated client method documents after the user's docs: how it
/// fails, what it waits for, and what dropping it does. (No intra-doc links: they would break
/// in a crate that renames `fdrpc`.)
fn call_sections(m: &Method<'_>, blocking: bool) -> Vec<TokenStream> {
    let mut text: Vec<String> = Vec::new();
    if m.is_oneway() {
        text.push(String::new());
        text.push(if blocking {
            "Oneway: returns once the call is written to the socket; no reply comes back, and the handler's failures are not reported.".into()
        } else {
            "Oneway: returns once the call is queued, before it is written (waiting first, within the handle's timeout, while the send queue is over its bound); no reply comes back, and the handler's failures are not reported. `client().flush().await` waits until everything queued is written.".into()
        });
        text.extend(
            [
                "",
                "# Errors",
                "",
                "`RpcError::Encode` if the arguments cannot be encoded, `RpcError::Connection` if the connection is gone",
            ]
            .map(String::from),
        );
        text.push(if blocking {
            "(or `RpcError::Timeout` if the socket stays full for the handle's timeout).".into()
        } else {
            "(or `RpcError::Timeout` if the send queue stays full for the handle's timeout).".into()
        });
        return text.into_iter().map(|l| quote!(#[doc = #l])).collect();
    }
    text.extend(["", "# Errors", ""].map(String::from));
    if m.ret.exception.is_some() {
        text.push("`CallError::Service` with the method's declared error; `CallError::Rpc` when the call itself fails:".into());
    } else {
        text.push("An `RpcError` when the call fails:".into());
    }
    text.push("`Timeout` when no reply came within the handle's timeout (25 s unless `with_timeout` or `without_timeout` says otherwise; the server is told to drop the handler), `Application` when the server could not run the call (an unknown method, arguments it refused, a panic in the handler, a deadline that passed), `Connection` when the connection failed, `Encode` and `Decode` for values that do not fit the wire.".into());
    if m.ret.stream.is_some() {
        text.push(
            "The items of the returned stream fail the same way, one error ending it.".into(),
        );
    }
    text.push(String::new());
    if blocking {
        text.push("# Blocking".into());
        text.push(String::new());
        text.push("Waits on this thread for the reply, for at most the handle's timeout; calls from other threads on clones of this client are in flight meanwhile.".into());
        if m.sink().is_some() {
            text.push("The sink's items are pulled from the iterator on this thread, as the server grants credit.".into());
        }
    } else {
        text.push("# Cancel safety".into());
        text.push(String::new());
        text.push("Dropping the future before it completes cancels the call: the server is sent `cancel` and drops its handler at once; a reply that comes anyway is discarded and its fds closed.".into());
        if m.sink().is_some() {
            text.push(
                "A sink still being sent is aborted, and the handler sees it break off.".into(),
            );
        }
        if m.ret.stream.is_some() {
            text.push(
                "Dropping the returned stream cancels it: the producer on the server is dropped."
                    .into(),
            );
        }
    }
    text.into_iter().map(|l| quote!(#[doc = #l])).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::service::{Service, ServiceOptions};
    use crate::ctxt::Ctxt;

    fn generate<R>(item: syn::ItemTrait, f: impl FnOnce(&ServiceGenerator<'_>) -> R) -> R {
        let cx = Ctxt::new();
        let service = Service::from_syn(&cx, ServiceOptions::default(), &item);
        cx.check().unwrap();
        f(&ServiceGenerator::new(&service))
    }

    #[test]
    fn every_listed_item_is_emitted_under_its_name() {
        let item: syn::ItemTrait = syn::parse_quote! {
            trait Probe { async fn ping(&self) -> i32; }
        };
        generate(item, |g| {
            for blocking in [false, true] {
                for (name, _) in CLIENT_ITEMS {
                    let tokens = g.client_item(name, blocking);
                    let f: syn::ImplItemFn = syn::parse2(tokens)
                        .unwrap_or_else(|e| panic!("`{name}` (blocking: {blocking}): {e}"));
                    assert_eq!(f.sig.ident, name);
                }
                // Nothing is emitted that the list does not name.
                let emitted = g.client_items(blocking);
                let items: syn::ItemImpl = syn::parse2(quote!(impl X { #emitted })).unwrap();
                let names: Vec<String> = items
                    .items
                    .iter()
                    .map(|i| match i {
                        syn::ImplItem::Fn(f) => f.sig.ident.to_string(),
                        _ => panic!("not a method"),
                    })
                    .collect();
                let listed: Vec<&str> = CLIENT_ITEMS.iter().map(|(n, _)| *n).collect();
                assert_eq!(names, listed);
            }
        });
    }

    #[test]
    fn a_method_takes_the_name_of_an_item_that_yields() {
        let item: syn::ItemTrait = syn::parse_quote! {
            trait Probe { async fn idl(&self) -> String; }
        };
        generate(item, |g| {
            let tokens = g.client_items(false).to_string();
            assert!(!tokens.contains("fn idl"), "{tokens}");
            assert!(tokens.contains("fn connect"));
        });
        assert!(matches!(client_item("idl"), Some(Clash::Yield)));
        assert!(matches!(client_item("new"), Some(Clash::Refuse(_))));
        assert!(client_item("open").is_none());
    }
}
