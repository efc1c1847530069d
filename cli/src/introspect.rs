//! `fdrpc introspect`: the IDL a server serves, as it is or as JSON.

use serde_json::{Map, Value, json};

use crate::schema::{Field, Schema, StreamDef, StructKind};

/// The machine-readable description of `schema`: services and their methods (parameters,
/// result, exception, stream, sink, and whether fds travel), and every type (fields, and which
/// of them hold fds).
pub fn describe(schema: &Schema) -> Value {
    let services: Vec<Value> = schema
        .services
        .iter()
        .map(|service| {
            let methods: Vec<Value> = schema
                .functions
                .iter()
                .filter(|f| &f.service == service && !f.name.starts_with("_fdrpc"))
                .map(|f| {
                    let stream = |s: &Option<StreamDef>| {
                        s.as_ref().map_or(Value::Null, |s| {
                            json!({
                                "item": s.item.to_string(),
                                "error": s.error.as_ref().map(ToString::to_string),
                                "fds": s.item.holds_fds(schema)
                                    || s.error.as_ref().is_some_and(|e| e.holds_fds(schema)),
                            })
                        })
                    };
                    json!({
                        "name": f.name,
                        "call_as": schema.display_name(f),
                        "doc": f.doc,
                        "oneway": f.oneway,
                        "params": fields(schema, &f.params),
                        "returns": f.returns.to_string(),
                        "returns_fds": f.returns.holds_fds(schema),
                        "throws": f.throws.as_ref().map(ToString::to_string),
                        "stream": stream(&f.stream),
                        "sink": stream(&f.sink),
                    })
                })
                .collect();
            json!({"name": service, "methods": methods})
        })
        .collect();
    let mut types = Map::new();
    let mut names: Vec<&String> = schema.structs.keys().chain(schema.enums.keys()).collect();
    names.sort();
    for name in names {
        let value = if let Some(s) = schema.structs.get(name) {
            let kind = match s.kind {
                StructKind::Struct => "struct",
                StructKind::Union => "union",
                StructKind::Exception => "exception",
            };
            json!({"kind": kind, "fields": fields(schema, &s.fields)})
        } else {
            let values: Map<String, Value> = schema.enums[name]
                .iter()
                .map(|(v, n)| (v.clone(), json!(n)))
                .collect();
            json!({"kind": "enum", "values": values})
        };
        types.insert(name.clone(), value);
    }
    json!({"services": services, "types": types})
}

fn fields(schema: &Schema, fields: &[Field]) -> Vec<Value> {
    fields
        .iter()
        .map(|f| {
            json!({
                "id": f.id,
                "name": f.name,
                "type": f.ty.to_string(),
                "optional": f.optional,
                "fds": f.ty.holds_fds(schema),
            })
        })
        .collect()
}
