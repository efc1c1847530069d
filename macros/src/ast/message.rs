//! The derive input as fdrpc sees it: a struct, a unit-only enum or a union, with field ids
//! and wire names resolved. Borrows the syn input and keeps it for spans.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Data as SynData, DeriveInput, Fields, Generics, Ident, Path, Type};

use crate::attr::{Attrs, Position, int_of};
use crate::ctxt::Ctxt;

pub(crate) struct Container<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    /// Thrift name.
    pub(crate) name: String,
    /// Path of the `fdrpc` crate in generated code.
    pub(crate) krate: Path,
    pub(crate) data: Data<'a>,
}

pub(crate) enum Data<'a> {
    /// A struct with named fields (or a unit struct: no fields).
    Struct(Vec<Field<'a>>),
    /// A unit-only enum: a Thrift `enum`.
    Enum(Vec<EnumValue<'a>>),
    /// An enum with data: a Thrift `union`.
    Union(Vec<UnionVariant<'a>>),
}

pub(crate) struct Field<'a> {
    pub(crate) member: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) id: i64,
    /// Where the id came from: the `id = N` literal, or the field name if implicit.
    pub(crate) id_span: Span,
    pub(crate) name: String,
    pub(crate) binary: bool,
    pub(crate) fd: Option<Span>,
}

pub(crate) struct EnumValue<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) value: i64,
    pub(crate) value_span: Span,
    pub(crate) name: String,
}

pub(crate) struct UnionVariant<'a> {
    pub(crate) ident: &'a Ident,
    /// The single field's type; `None` for a unit variant (an empty struct on the wire).
    pub(crate) ty: Option<&'a Type>,
    pub(crate) id: i64,
    pub(crate) id_span: Span,
    pub(crate) name: String,
}

fn unraw(ident: &Ident) -> String {
    syn::ext::IdentExt::unraw(ident).to_string()
}

impl<'a> Container<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Container<'a>> {
        let attrs = Attrs::from_syn(cx, Position::Container, &input.attrs);
        let name = attrs
            .rename
            .get()
            .cloned()
            .unwrap_or_else(|| unraw(&input.ident));
        let krate = attrs
            .krate
            .get()
            .cloned()
            .unwrap_or_else(|| syn::parse_quote!(::fdrpc));
        let data = match &input.data {
            SynData::Struct(s) => match &s.fields {
                Fields::Named(named) => Data::Struct(
                    named
                        .named
                        .iter()
                        .enumerate()
                        .map(|(i, f)| field_from_syn(cx, i, f))
                        .collect(),
                ),
                Fields::Unit => Data::Struct(Vec::new()),
                Fields::Unnamed(u) => {
                    cx.error_spanned_by(
                        u,
                        "fdrpc::Message needs named fields; give each field a name (Thrift fields are named)",
                    );
                    return None;
                }
            },
            SynData::Enum(e) => {
                if e.variants.iter().all(|v| matches!(v.fields, Fields::Unit)) {
                    Data::Enum(enum_from_syn(cx, e))
                } else {
                    Data::Union(union_from_syn(cx, e))
                }
            }
            SynData::Union(u) => {
                cx.error_spanned_by(
                    u.union_token,
                    "fdrpc::Message cannot be derived for a Rust `union`; use an enum whose variants hold data (a Thrift union)",
                );
                return None;
            }
        };
        Some(Container {
            ident: &input.ident,
            generics: &input.generics,
            name,
            krate,
            data,
        })
    }
}

fn field_from_syn<'a>(cx: &Ctxt, index: usize, f: &'a syn::Field) -> Field<'a> {
    let attrs = Attrs::from_syn(cx, Position::Field, &f.attrs);
    let member = f.ident.as_ref().expect("named field");
    let (id, id_span) = match (attrs.id.get(), attrs.id.span()) {
        (Some(id), Some(span)) => (*id, span),
        _ => (index as i64 + 1, member.span()),
    };
    Field {
        member,
        ty: &f.ty,
        id,
        id_span,
        name: attrs.rename.get().cloned().unwrap_or_else(|| unraw(member)),
        binary: attrs.binary.get().is_some(),
        fd: attrs.fd.span(),
    }
}

fn enum_from_syn<'a>(cx: &Ctxt, e: &'a syn::DataEnum) -> Vec<EnumValue<'a>> {
    let mut next: i64 = 0;
    let mut out = Vec::new();
    for v in &e.variants {
        let attrs = Attrs::from_syn(cx, Position::Variant, &v.attrs);
        if let Some(span) = attrs.id.span() {
            cx.syn_error(syn::Error::new(
                span,
                "`#[fdrpc(id = ...)]` is not allowed on a unit-only enum's variant; its value is the discriminant (`Variant = 3`)",
            ));
        }
        let (value, value_span) = match &v.discriminant {
            Some((_, expr)) => match int_of(expr) {
                Some(value) => (value, expr.span()),
                None => {
                    cx.error_spanned_by(
                        expr,
                        "an fdrpc enum discriminant must be an integer literal",
                    );
                    (next, expr.span())
                }
            },
            None => (next, v.ident.span()),
        };
        if i32::try_from(value).is_err() {
            cx.syn_error(syn::Error::new(
                value_span,
                format!("enum value {value} is out of range for a Thrift enum; values must fit in an i32"),
            ));
        }
        next = value.saturating_add(1);
        out.push(EnumValue {
            ident: &v.ident,
            value,
            value_span,
            name: attrs
                .rename
                .get()
                .cloned()
                .unwrap_or_else(|| unraw(&v.ident)),
        });
    }
    out
}

fn union_from_syn<'a>(cx: &Ctxt, e: &'a syn::DataEnum) -> Vec<UnionVariant<'a>> {
    let mut out = Vec::new();
    for (i, v) in e.variants.iter().enumerate() {
        let attrs = Attrs::from_syn(cx, Position::Variant, &v.attrs);
        let ty = match &v.fields {
            Fields::Unit => None,
            Fields::Unnamed(u) if u.unnamed.len() == 1 => u.unnamed.first().map(|f| &f.ty),
            other => {
                cx.error_spanned_by(
                    other,
                    "a union variant holds exactly one value; wrap several fields in a struct that derives fdrpc::Message",
                );
                None
            }
        };
        if let Some((eq, _)) = &v.discriminant {
            cx.error_spanned_by(
                eq,
                "a union variant takes `#[fdrpc(id = N)]`, not a discriminant",
            );
        }
        let (id, id_span) = match (attrs.id.get(), attrs.id.span()) {
            (Some(id), Some(span)) => (*id, span),
            _ => (i as i64 + 1, v.ident.span()),
        };
        out.push(UnionVariant {
            ident: &v.ident,
            ty,
            id,
            id_span,
            name: attrs
                .rename
                .get()
                .cloned()
                .unwrap_or_else(|| unraw(&v.ident)),
        });
    }
    out
}
