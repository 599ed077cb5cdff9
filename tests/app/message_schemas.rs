//! The message contracts in docs/: the examples and the envelope the code really writes validate
//! against the JSON Schemas, and messages that break the rules do not.

use std::path::Path;

use serde_json::{Value, json};
use signup_queue::events::Envelope;

fn load(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn validator(schema: &str) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&load(schema))
        .expect("a valid JSON Schema")
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn the_examples_match_their_schemas() {
    for (schema, example) in [
        (
            "docs/schemas/user_registered.v1.json",
            "docs/examples/user_registered.v1.json",
        ),
        (
            "docs/schemas/order_placed.v1.json",
            "docs/examples/order_placed.v1.json",
        ),
    ] {
        let found = errors(&validator(schema), &load(example));
        assert!(found.is_empty(), "{example}: {found:?}");
    }
}

#[test]
fn the_envelope_the_code_writes_matches_the_schema() {
    let written = serde_json::to_value(Envelope::user_registered(42)).expect("serializes");
    let found = errors(&validator("docs/schemas/user_registered.v1.json"), &written);
    assert!(found.is_empty(), "{written}: {found:?}");
}

#[test]
fn messages_that_break_the_contract_are_refused() {
    let user_registered = validator("docs/schemas/user_registered.v1.json");
    let good = load("docs/examples/user_registered.v1.json");
    let mut newer = good.clone();
    newer["version"] = json!(2);
    let mut no_user = good.clone();
    no_user["payload"] = json!({});
    let mut bad_time = good.clone();
    bad_time["occurred_at"] = json!("yesterday");
    for (what, message) in [
        ("version 2", newer),
        ("no user_id", no_user),
        ("bad time", bad_time),
    ] {
        assert!(!user_registered.is_valid(&message), "{what} accepted");
    }
    // A payload may grow an optional field without a new version.
    let mut grown = good;
    grown["payload"]["referrer"] = json!("newsletter");
    assert!(user_registered.is_valid(&grown));

    let order_placed = validator("docs/schemas/order_placed.v1.json");
    let order = load("docs/examples/order_placed.v1.json");
    let mut float_money = order.clone();
    float_money["payload"]["total_minor"] = json!(45.98);
    let mut no_lines = order.clone();
    no_lines["payload"]["lines"] = json!([]);
    let mut bad_currency = order;
    bad_currency["payload"]["currency"] = json!("euro");
    for (what, message) in [
        ("float money", float_money),
        ("no lines", no_lines),
        ("bad currency", bad_currency),
    ] {
        assert!(!order_placed.is_valid(&message), "{what} accepted");
    }
}
