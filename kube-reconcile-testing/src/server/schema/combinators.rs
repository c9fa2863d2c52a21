//! `allOf`, `anyOf`, `oneOf` and `not`: validation-only subschemas checked at the value's
//! own path, reported as kube-openapi reports them (the summary's field is `<nil>`).

use serde_json::Value;

use super::validate::{unpathed, validate};
use crate::server::error::FieldError;

/// `allOf`, `anyOf`, `oneOf` and `not`: validation-only subschemas at the same path.
pub(super) fn combinators(schema: &Value, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let run = |sub: &Value| {
        let mut found = Vec::new();
        validate(sub, v, path, &mut found);
        found
    };
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        let mut failed = false;
        for sub in all {
            let found = run(sub);
            failed |= !found.is_empty();
            errors.extend(found);
        }
        if failed {
            errors.push(unpathed(format!(
                "\"{path}\" must validate all the schemas (allOf)"
            )));
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let results: Vec<Vec<FieldError>> = any.iter().map(run).collect();
        if !results.iter().any(Vec::is_empty) {
            errors.push(unpathed(format!(
                "\"{path}\" must validate at least one schema (anyOf)"
            )));
            errors.extend(results.into_iter().next().unwrap_or_default());
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let results: Vec<Vec<FieldError>> = one.iter().map(run).collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid == 0 {
            errors.push(unpathed(format!(
                "\"{path}\" must validate one and only one schema (oneOf)"
            )));
            errors.extend(results.into_iter().next().unwrap_or_default());
        } else if valid > 1 {
            errors.push(unpathed(format!(
                "\"{path}\" must validate one and only one schema (oneOf). Found {valid} valid alternatives"
            )));
        }
    }
    if let Some(not) = schema.get("not")
        && run(not).is_empty()
    {
        errors.push(unpathed(format!(
            "\"{path}\" must not validate the schema (not)"
        )));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::messages;

    #[test]
    fn combinators_report_their_branches_and_an_unpathed_summary() {
        let all = json!({"type": "integer", "allOf": [{"minimum": 2}, {"maximum": 5}]});
        assert_eq!(
            messages(&all, &json!(9)),
            [
                "spec.f: Invalid value: 9: spec.f in body should be less than or equal to 5",
                "<nil>: Invalid value: \"\": \"spec.f\" must validate all the schemas (allOf)",
            ]
        );
        let any = json!({"type": "string", "anyOf": [{"pattern": "^a"}, {"pattern": "^b"}]});
        assert_eq!(
            messages(&any, &json!("c")),
            [
                "<nil>: Invalid value: \"\": \"spec.f\" must validate at least one schema (anyOf)",
                "spec.f: Invalid value: \"c\": spec.f in body should match '^a'",
            ]
        );
        assert!(messages(&any, &json!("b")).is_empty());
        let one = json!({"type": "integer", "oneOf": [{"minimum": 5}, {"maximum": 7}]});
        assert_eq!(
            messages(&one, &json!(6)),
            [
                "<nil>: Invalid value: \"\": \"spec.f\" must validate one and only one schema (oneOf). Found 2 valid alternatives"
            ]
        );
        assert!(messages(&one, &json!(8)).is_empty());
        let not = json!({"type": "string", "not": {"enum": ["x"]}});
        assert_eq!(
            messages(&not, &json!("x")),
            ["<nil>: Invalid value: \"\": \"spec.f\" must not validate the schema (not)"]
        );
    }
}
