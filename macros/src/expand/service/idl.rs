//! The function that renders the service's Thrift IDL (`__fdrpc_idl`), with every type it
//! uses, the introspection method, and the annotations that describe streams and sinks.

use proc_macro2::TokenStream;
use quote::quote;

use super::ServiceGenerator;

impl ServiceGenerator<'_> {
    /// `fn __fdrpc_describe(&mut Idl)` (the service and its types, into a document that may
    /// hold other services too) and `fn __fdrpc_idl() -> String` (this service alone).
    pub(super) fn idl_fn(&self) -> TokenStream {
        let service = self.service;
        let p = &self.p;
        let name = &service.name;
        let service_doc: Vec<&syn::Attribute> = service
            .item
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .collect();
        let service_doc = doc_strings(&service_doc);
        let functions = service.methods.iter().map(|m| {
            let wire = &m.name;
            let doc = doc_strings(&m.docs);
            let oneway = m.is_oneway();
            let params = m.wire_params().map(|param| {
                let (id, n, ty) = (param.id as i16, &param.wire_name, param.ty);
                let repr = if param.binary {
                    if crate::expand::message::is_option(ty) {
                        quote!(#p::Option<#p::Binary>)
                    } else {
                        quote!(#p::Binary)
                    }
                } else {
                    quote!(#ty)
                };
                quote!(#p::IdlField::new(#id, #n, <#repr as #p::Field>::idl_type(&mut __idl), false))
            });
            let returns = match m.ret.value {
                Some(t) => {
                    let t = self.travels(t);
                    quote!(<#t as #p::Field>::idl_type(&mut __idl))
                }
                None => quote!(#p::String::from("void")),
            };
            let throws = match m.ret.exception {
                Some(e) => {
                    let e = self.projection(e, quote!(Exception));
                    quote! {{
                    let __e = <#e as #p::Field>::idl_type(&mut __idl);
                    __idl.mark_exception(&__e);
                    #p::Option::Some(__e)
                }}
                }
                None => quote!(#p::Option::None),
            };
            let mut annotations = Vec::new();
            let mut notes: Vec<String> = Vec::new();
            if let Some(st) = m.ret.stream {
                let item = self.travels(st.item);
                annotations.push(quote!((#p::String::from("fdrpc.stream"), <#item as #p::Field>::idl_type(&mut __idl))));
                if let Some(e) = st.error {
                    let e = self.travels(e);
                    annotations.push(quote!((#p::String::from("fdrpc.stream_error"), <#e as #p::Field>::idl_type(&mut __idl))));
                }
                notes.push("fdrpc stream: the reply opens a stream of the `fdrpc.stream` items (docs/PROTOCOL.md, \"Streams and sinks\"); a stock Thrift client sees only the opening reply.".into());
            }
            if let Some(st) = m.sink().and_then(|s| s.stream) {
                let item = self.travels(st.item);
                annotations.push(quote!((#p::String::from("fdrpc.sink"), <#item as #p::Field>::idl_type(&mut __idl))));
                if let Some(e) = st.error {
                    let e = self.travels(e);
                    annotations.push(quote!((#p::String::from("fdrpc.sink_error"), <#e as #p::Field>::idl_type(&mut __idl))));
                }
                notes.push("fdrpc sink: the caller also sends a stream of the `fdrpc.sink` items (docs/PROTOCOL.md, \"Streams and sinks\").".into());
            }
            if let Some(t) = m.ret.value {
                if crate::expand::message::is_option(t) {
                    notes.push("Returns nothing (the result's success field unset) for none.".into());
                }
            }
            let note = if notes.is_empty() {
                quote!(#p::Option::None)
            } else {
                let n = notes.join(" ");
                quote!(#p::Option::Some(#p::String::from(#n)))
            };
            quote! {
                #p::IdlFunction {
                    name: #p::String::from(#wire),
                    doc: #p::Vec::from([#(#p::String::from(#doc)),*]),
                    oneway: #oneway,
                    returns: #returns,
                    params: #p::Vec::from([#(#params),*]),
                    throws: #throws,
                    annotations: #p::Vec::from([#(#annotations),*]),
                    note: #note,
                }
            }
        });
        let methods = service.methods.iter().map(|m| &m.name);
        quote! {
            fn __fdrpc_describe(mut __idl: &mut #p::Idl) {
                // Once per document: an endpoint of this service in its own methods (or in
                // another's that this one's name) describes it again.
                if !__idl.begin(::core::concat!("service ", #name)) {
                    return;
                }
                let mut __functions: #p::Vec<#p::IdlFunction> = #p::Vec::new();
                #(__functions.push(#functions);)*
                __functions.push(#p::introspection_function());
                __idl.service(#name, &[#(#p::String::from(#service_doc)),*], &__functions);
            }

            fn __fdrpc_idl() -> #p::String {
                let mut __idl = #p::Idl::new();
                __fdrpc_describe(&mut __idl);
                __idl.render()
            }

            /// The wire names of the methods.
            const __FDRPC_METHODS: &[&str] = &[#(#methods),*];
        }
    }
}

fn doc_strings(attrs: &[&syn::Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
