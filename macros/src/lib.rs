//! Macros of [fdrpc](https://docs.rs/fdrpc). Use them through the `fdrpc` crate, which
//! re-exports them; generated code reaches the runtime only through `fdrpc::__private`.
//!
//! # `#[derive(Message)]`
//!
//! On a struct with named fields (a Thrift `struct`), an enum of unit variants (a Thrift
//! `enum`, an `i32`), or an enum whose variants each hold one value or none (a Thrift
//! `union`). Attributes:
//!
//! - on the type:
//!   - `#[fdrpc(rename = "Name")]`: the Thrift name (default: the Rust name);
//!   - `#[fdrpc(crate = path)]`: where the `fdrpc` crate is (default `::fdrpc`).
//! - on a field:
//!   - `#[fdrpc(id = N)]`: the Thrift field id, 1 to 32767 (default: the field's position,
//!     counting from 1; explicit ids do not renumber the other fields);
//!   - `#[fdrpc(rename = "name")]`: the Thrift field name;
//!   - `#[fdrpc(binary)]`: a `Vec<u8>` (or `Option<Vec<u8>>`) travels as Thrift `binary`;
//!   - `#[fdrpc(fd)]`: asserts that the field holds descriptors (a compile error otherwise).
//! - on a union variant: `#[fdrpc(id = N)]` and `#[fdrpc(rename = "name")]`; on a unit-only
//!   enum's variant, `#[fdrpc(rename = "NAME")]` (its value is the discriminant).
//!
//! # `#[service]`
//!
//! On a trait of `async fn` methods taking `&self`. Generates, for `trait Broker`:
//! `BrokerClient` (async), `BrokerBlockingClient` (plain threads) and `BrokerServer<T>` (hand
//! it to `fdrpc::Server`). The trait itself is rewritten so every method returns a `Send`
//! future; implement it with `async fn`.
//!
//! - `#[fdrpc::service(rename = "Name")]`: the Thrift service name; `crate = path`: where the
//!   `fdrpc` crate is.
//! - on a method: `#[oneway]` (or `#[fdrpc(oneway)]`): no reply, returns nothing;
//!   `#[fdrpc(name = "wire_name")]`: the Thrift method name.
//! - on a parameter: `#[fdrpc(id = N)]`, `#[fdrpc(rename = "...")]`, `#[fdrpc(binary)]`,
//!   `#[fdrpc(fd)]` as on a struct field. Parameter n is field n of the Thrift
//!   `{method}_args` struct, not counting a `cx: &fdrpc::Context` parameter, which is not on
//!   the wire.
//! - returns: `T` (result field 0), `()` (void), `Option<T>` (field 0 absent for `None`),
//!   `Result<T, E>` with `E: Message` (field 1: a Thrift exception, which may carry fds),
//!   `fdrpc::Stream<T, E>` (a server stream), `(R, fdrpc::Stream<T, E>)` (a first response
//!   and a stream), or `Result` of either.
//! - a parameter `items: fdrpc::Stream<T, E>` makes the call a sink (client stream); with a
//!   stream returned too, items flow both ways.
#![deny(missing_docs)]

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;
mod fallback;
mod symbol;

use proc_macro::TokenStream;
use syn::{DeriveInput, ItemTrait, parse_macro_input};

/// Derives `fdrpc::Wire` and `fdrpc::Message`; see the [crate docs](crate).
#[proc_macro_derive(Message, attributes(fdrpc))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    message_pipeline(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Parse, check, generate; beside errors, a stub impl keeps uses of the type from failing too.
fn message_pipeline(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let cx = ctxt::Ctxt::new();
    let Some(cont) = ast::Container::from_syn(&cx, input) else {
        cx.check()?;
        unreachable!("from_syn returns None only after recording an error");
    };
    check::check(&cx, &cont);
    if let Err(e) = cx.check() {
        let mut out = e.to_compile_error();
        out.extend(fallback::message(&cont));
        return Ok(out);
    }
    Ok(expand::message::expand(&cont))
}

/// Turns a trait of `async fn` methods into an fdrpc service; see the [crate docs](crate).
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = parse_macro_input!(args with ast::service::ServiceArgs::parse_terminated);
    let item = parse_macro_input!(input as ItemTrait);
    service_pipeline(&args, &item).into()
}

/// Parse, check, generate: every error of the trait is reported at once.
fn service_pipeline(
    args: &ast::service::ServiceArgs,
    item: &ItemTrait,
) -> proc_macro2::TokenStream {
    let cx = ctxt::Ctxt::new();
    let options = ast::service::ServiceOptions::from_syn(&cx, args);
    let service = ast::service::Service::from_syn(&cx, options, item);
    check::service::check(&cx, &service);
    let generator = expand::service::ServiceGenerator::new(&service);
    match cx.check() {
        Ok(()) => quote::ToTokens::into_token_stream(generator),
        Err(e) => {
            // Keep the trait so code using it reports no follow-on errors.
            let mut out = e.to_compile_error();
            out.extend(generator.trait_def());
            out
        }
    }
}
