//! Thrift type expressions as text (`list<fd>`, `map<string, Bundle>`): what the `fdrpc.stream`
//! and `fdrpc.sink` annotations of the IDL hold, parsed into the IDL parser's own types.

use pilota_thrift_parser::{Annotations, Ident, Path, Ty, Type};

/// Parses one type expression.
///
/// # Errors
///
/// A description of what is wrong with `text`.
pub fn parse(text: &str) -> Result<Type, String> {
    let mut p = Parser { s: text, pos: 0 };
    let ty = p.ty()?;
    p.blank();
    if p.pos != p.s.len() {
        return Err(format!("unexpected `{}` in type `{text}`", &p.s[p.pos..]));
    }
    Ok(ty)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn blank(&mut self) {
        // By the character's length: a server's IDL may hold any Unicode space.
        while let Some(c) = self.s[self.pos..]
            .chars()
            .next()
            .filter(|c| c.is_whitespace())
        {
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, c: char) -> Result<(), String> {
        self.blank();
        if self.s[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            Ok(())
        } else {
            Err(format!(
                "expected `{c}` at byte {} of `{}`",
                self.pos, self.s
            ))
        }
    }

    fn word(&mut self) -> Result<&str, String> {
        self.blank();
        let start = self.pos;
        while self.s[self.pos..]
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(format!("expected a type at byte {start} of `{}`", self.s));
        }
        Ok(&self.s[start..self.pos])
    }

    fn ty(&mut self) -> Result<Type, String> {
        let ty = match self.word()? {
            "string" => Ty::String,
            "binary" => Ty::Binary,
            "bool" => Ty::Bool,
            "byte" | "i8" => Ty::Byte,
            "i16" => Ty::I16,
            "i32" => Ty::I32,
            "i64" => Ty::I64,
            "double" => Ty::Double,
            "void" => Ty::Void,
            "list" | "set" | "map" => return self.container(),
            name => Ty::Path(Path {
                segments: name.split('.').map(|s| Ident(s.into())).collect(),
            }),
        };
        Ok(Type(ty, Annotations::default()))
    }

    fn container(&mut self) -> Result<Type, String> {
        let kind = self.s[..self.pos]
            .rsplit(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or("")
            .to_owned();
        self.eat('<')?;
        let first = self.ty()?;
        let ty = match kind.as_str() {
            "map" => {
                self.eat(',')?;
                let value = self.ty()?;
                Ty::Map {
                    key: first.into(),
                    value: value.into(),
                    cpp_type: None,
                }
            }
            "set" => Ty::Set {
                value: first.into(),
                cpp_type: None,
            },
            _ => Ty::List {
                value: first.into(),
                cpp_type: None,
            },
        };
        self.eat('>')?;
        Ok(Type(ty, Annotations::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(t: &Type) -> String {
        match &t.0 {
            Ty::List { value, .. } => format!("list<{}>", show(value)),
            Ty::Set { value, .. } => format!("set<{}>", show(value)),
            Ty::Map { key, value, .. } => format!("map<{},{}>", show(key), show(value)),
            Ty::Path(p) => p
                .segments
                .iter()
                .map(|s| s.0.to_string())
                .collect::<Vec<_>>()
                .join("."),
            other => format!("{other:?}").to_lowercase(),
        }
    }

    #[test]
    fn types_parse_and_bad_ones_say_why() {
        for (text, shown) in [
            ("fd", "fd"),
            ("list<fd>", "list<fd>"),
            (" map< string , list<Bundle> > ", "map<string,list<Bundle>>"),
            ("set<i64>", "set<i64>"),
            ("i32", "i32"),
        ] {
            assert_eq!(show(&parse(text).unwrap()), shown, "{text}");
        }
        for bad in ["", "list<", "map<string>", "list<fd>>", "<fd>"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_keep_underscores_and_dots_and_any_space_separates() {
        assert_eq!(
            show(&parse("list<my_mod.Bundle_2>").unwrap()),
            "list<my_mod.Bundle_2>"
        );
        // U+3000 and U+00A0 are spaces of three and two bytes: skipped whole, not byte by
        // byte into the middle of a character.
        assert_eq!(
            show(&parse("\u{3000}map<\u{a0}string,\u{3000}fd\u{a0}>\u{3000}").unwrap()),
            "map<string,fd>"
        );
        let e = parse("list<fd>\u{3000}é").unwrap_err();
        assert!(e.contains("unexpected `é`"), "{e}");
    }
}
