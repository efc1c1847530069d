//! `#[derive(Message)]`: `Wire` (and `Message` for structs and unions).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::Type;
use syn::spanned::Spanned;

use crate::ast::{Container, Data, EnumValue, Field, UnionVariant};

/// `Wire` (and `Message`) for a checked container.
pub(crate) fn expand(cont: &Container<'_>) -> TokenStream {
    let krate = &cont.krate;
    let p = quote!(#krate::__private);
    let ident = cont.ident;
    let (impl_g, ty_g, where_c) = cont.generics.split_for_impl();
    let name = &cont.name;
    let body = match &cont.data {
        Data::Struct(fields) => struct_body(&p, fields),
        Data::Enum(values) => enum_body(&p, values),
        Data::Union(variants) => union_body(&p, variants),
    };
    let idl = idl_body(&p, cont);
    let display = display_body(&p, cont);
    let message_impl = match cont.data {
        Data::Enum(_) => quote!(),
        _ => quote! {
            #[automatically_derived]
            impl #impl_g #p::Message for #ident #ty_g #where_c {
                const NAME: &'static str = #name;
            }
        },
    };
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl #impl_g #p::Wire for #ident #ty_g #where_c {
                #body
                #idl
                #display
            }
            #message_impl
        };
    }
}

/// `Wire::fmt_display`: the type's `Display`, if it has one, picked at the concrete type. Not
/// for generic types, whose `Display` may depend on bounds the impl cannot prove.
fn display_body(p: &TokenStream, cont: &Container<'_>) -> TokenStream {
    if cont.generics.type_params().next().is_some() {
        return quote!();
    }
    quote! {
        fn fmt_display(
            &self,
            __f: &mut ::core::fmt::Formatter<'_>,
        ) -> #p::Option<::core::fmt::Result> {
            #[allow(unused_imports)]
            use #p::display::{ViaDisplay as _, ViaNothing as _};
            (&&#p::display::Probe(self)).display_or_none(__f)
        }
    }
}

/// The type a field travels as: itself, or `Binary` (`Option<Binary>`) for
/// `#[fdrpc(binary)]`, chosen by syntax so a misplaced `binary` yields one error, at the field.
fn field_repr(p: &TokenStream, f: &Field<'_>) -> TokenStream {
    let ty = f.ty;
    if !f.binary {
        quote!(#ty)
    } else if is_option(ty) {
        quote!(#p::Option<#p::Binary>)
    } else {
        quote!(#p::Binary)
    }
}

pub(crate) fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Option"),
        Type::Group(g) => is_option(&g.elem),
        Type::Paren(p) => is_option(&p.elem),
        _ => false,
    }
}

/// `Wire::idl_type`: registers the definition (once) and names it.
fn idl_body(p: &TokenStream, cont: &Container<'_>) -> TokenStream {
    let name = &cont.name;
    let define = match &cont.data {
        Data::Struct(fields) => {
            let fields = fields.iter().map(|f| {
                let repr = field_repr(p, f);
                let (id, n) = (f.id as i16, &f.name);
                quote!(#p::IdlField::new(#id, #n, <#repr as #p::Field>::idl_type(__idl), <#repr as #p::Field>::OPTIONAL))
            });
            quote! {
                let __fields = #p::Vec::from([#(#fields),*]);
                __idl.define_struct(#name, __fields);
            }
        }
        Data::Union(variants) => {
            let fields = variants.iter().map(|v| {
                let (id, n) = (v.id as i16, &v.name);
                let ty = match v.ty {
                    Some(ty) => quote!(<#ty as #p::Field>::idl_type(__idl)),
                    None => quote!(<() as #p::Wire>::idl_type(__idl)),
                };
                quote!(#p::IdlField::new(#id, #n, #ty, true))
            });
            quote! {
                let __fields = #p::Vec::from([#(#fields),*]);
                __idl.define_union(#name, __fields);
            }
        }
        Data::Enum(values) => {
            let values = values.iter().map(|v| {
                let (n, val) = (&v.name, v.value as i32);
                quote!((#p::String::from(#n), #val))
            });
            quote!(__idl.define_enum(#name, #p::Vec::from([#(#values),*]));)
        }
    };
    quote! {
        fn idl_type(__idl: &mut #p::Idl) -> #p::String {
            if __idl.begin(#name) {
                #define
            }
            #p::String::from(#name)
        }
    }
}

fn struct_body(p: &TokenStream, fields: &[Field<'_>]) -> TokenStream {
    let binds: Vec<_> = (0..fields.len())
        .map(|i| quote::format_ident!("__f{}", i))
        .collect();
    let members: Vec<_> = fields.iter().map(|f| f.member).collect();
    let reprs: Vec<_> = fields.iter().map(|f| field_repr(p, f)).collect();
    let has_fds = reprs.iter().map(|r| quote!(<#r as #p::Field>::HAS_FDS));
    let encode_fields = fields.iter().zip(&binds).zip(&reprs).map(|((f, b), repr)| {
        let id = f.id as i16;
        let value = if f.binary {
            let ty = f.ty;
            quote_spanned!(ty.span()=> <#ty as #p::BinaryField<#repr>>::into_repr(#b))
        } else {
            quote!(#b)
        };
        quote_spanned! {f.ty.span()=>
            <#repr as #p::Field>::encode_field(#value, #id, &mut __last, __enc)?;
        }
    });
    let fd_asserts = fields.iter().filter(|f| f.fd.is_some()).map(|f| {
        let ty = f.ty;
        quote_spanned!(ty.span()=> #p::assert_fd::<#ty>();)
    });
    let decl = binds
        .iter()
        .zip(&reprs)
        .map(|(b, repr)| quote!(let mut #b: #p::Option<#repr> = #p::Option::None;));
    let arms = fields.iter().zip(&binds).zip(&reprs).map(|((f, b), repr)| {
        let id = f.id as i16;
        let member = f.member.to_string();
        let member = member.trim_start_matches("r#");
        quote_spanned! {f.ty.span()=>
            #id => {
                #b = #p::Option::Some(
                    <#repr as #p::Field>::decode_field(__dec, __ty)
                        .map_err(|__e| __e.in_field(#member))?,
                );
            }
        }
    });
    let finish = fields.iter().zip(&binds).zip(&reprs).map(|((f, b), repr)| {
        let m = f.member;
        let member = m.to_string();
        let member = member.trim_start_matches("r#");
        let value = quote! {
            match #b {
                #p::Option::Some(__v) => __v,
                #p::Option::None => match <#repr as #p::Field>::missing() {
                    #p::Option::Some(__v) => __v,
                    #p::Option::None => {
                        return #p::Result::Err(
                            #p::DecodeError::new(#p::DecodeErrorKind::MissingField).in_field(#member),
                        );
                    }
                },
            }
        };
        if f.binary {
            let ty = f.ty;
            quote_spanned!(ty.span()=> #m: <#ty as #p::BinaryField<#repr>>::from_repr(#value))
        } else {
            quote!(#m: #value)
        }
    });
    quote! {
        const TTYPE: #p::TType = #p::TType::Struct;
        const HAS_FDS: bool = false #(|| #has_fds)*;

        #[inline]
        fn encode(self, __enc: &mut #p::Encoder) -> #p::Result<(), #p::EncodeError> {
            #(#fd_asserts)*
            let Self { #(#members: #binds),* } = self;
            let mut __last: i16 = 0;
            #(#encode_fields)*
            __enc.write_stop();
            #p::Result::Ok(())
        }

        #[inline]
        fn decode(__dec: &mut #p::Decoder<'_>) -> #p::Result<Self, #p::DecodeError> {
            __dec.enter()?;
            #(#decl)*
            let mut __last: i16 = 0;
            while let #p::Option::Some((__ty, __id)) = __dec.read_field_header(&mut __last)? {
                match __id {
                    #(#arms)*
                    _ => __dec.skip(__ty)?,
                }
            }
            __dec.leave();
            #p::Result::Ok(Self { #(#finish),* })
        }
    }
}

fn enum_body(p: &TokenStream, values: &[EnumValue<'_>]) -> TokenStream {
    let idents: Vec<_> = values.iter().map(|v| v.ident).collect();
    let nums: Vec<_> = values
        .iter()
        .map(|v| {
            let n = v.value as i32;
            quote_spanned!(v.value_span=> #n)
        })
        .collect();
    quote! {
        const TTYPE: #p::TType = #p::TType::I32;

        #[inline]
        fn encode(self, __enc: &mut #p::Encoder) -> #p::Result<(), #p::EncodeError> {
            let __v: i32 = match self {
                #(Self::#idents => #nums,)*
            };
            __enc.write_i32(__v);
            #p::Result::Ok(())
        }

        #[inline]
        fn decode(__dec: &mut #p::Decoder<'_>) -> #p::Result<Self, #p::DecodeError> {
            match __dec.read_i32()? {
                #(#nums => #p::Result::Ok(Self::#idents),)*
                __other => #p::Result::Err(#p::DecodeErrorKind::UnknownEnumValue(__other).into()),
            }
        }
    }
}

fn union_body(p: &TokenStream, variants: &[UnionVariant<'_>]) -> TokenStream {
    let unit: Type = syn::parse_quote!(());
    let has_fds = variants
        .iter()
        .filter_map(|v| v.ty)
        .map(|ty| quote!(<#ty as #p::Field>::HAS_FDS));
    let encode_arms = variants.iter().map(|v| {
        let ident = v.ident;
        let id = v.id as i16;
        match v.ty {
            Some(ty) => quote_spanned! {ty.span()=>
                Self::#ident(__v) => <#ty as #p::Field>::encode_field(__v, #id, &mut __last, __enc)?,
            },
            None => quote! {
                Self::#ident => <#unit as #p::Field>::encode_field((), #id, &mut __last, __enc)?,
            },
        }
    });
    let decode_arms = variants.iter().map(|v| {
        let ident = v.ident;
        let id = v.id as i16;
        let name = ident.to_string();
        let name = name.trim_start_matches("r#");
        match v.ty {
            Some(ty) => quote_spanned! {ty.span()=>
                #id => Self::#ident(
                    <#ty as #p::Field>::decode_field(__dec, __ty).map_err(|__e| __e.in_field(#name))?,
                ),
            },
            None => quote! {
                #id => {
                    <#unit as #p::Field>::decode_field(__dec, __ty).map_err(|__e| __e.in_field(#name))?;
                    Self::#ident
                }
            },
        }
    });
    quote! {
        const TTYPE: #p::TType = #p::TType::Struct;
        const HAS_FDS: bool = false #(|| #has_fds)*;

        #[inline]
        fn encode(self, __enc: &mut #p::Encoder) -> #p::Result<(), #p::EncodeError> {
            let mut __last: i16 = 0;
            match self {
                #(#encode_arms)*
            }
            __enc.write_stop();
            #p::Result::Ok(())
        }

        #[inline]
        fn decode(__dec: &mut #p::Decoder<'_>) -> #p::Result<Self, #p::DecodeError> {
            __dec.enter()?;
            let mut __out: #p::Option<Self> = #p::Option::None;
            let mut __last: i16 = 0;
            while let #p::Option::Some((__ty, __id)) = __dec.read_field_header(&mut __last)? {
                let __v = match __id {
                    #(#decode_arms)*
                    _ => {
                        __dec.skip(__ty)?;
                        continue;
                    }
                };
                if __out.is_some() {
                    return #p::Result::Err(
                        #p::DecodeErrorKind::InvalidUnion("more than one field is set").into(),
                    );
                }
                __out = #p::Option::Some(__v);
            }
            __dec.leave();
            match __out {
                #p::Option::Some(__v) => #p::Result::Ok(__v),
                #p::Option::None => #p::Result::Err(
                    #p::DecodeErrorKind::InvalidUnion("no known field is set").into(),
                ),
            }
        }
    }
}
