//! Every kind of bad input gets its documented 4xx with the JSON error shape, the server never
//! panics, and nothing is written (on SQLite and on PostgreSQL). Plus properties of the parsers
//! over arbitrary strings.

use proptest::prelude::*;
use signup_queue::{
    users::{DisplayName, Email},
    with_db,
};

use crate::support::*;

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

struct Case {
    what: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn case(
    what: &'static str,
    content_type: Option<&'static str>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        what,
        content_type,
        body: body.into(),
        status,
        code,
        field,
    }
}

fn json(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).expect("serializes")
}

fn cases() -> Vec<Case> {
    use serde_json::json as j;
    let long_email = format!("{}@example.com", "a".repeat(1000));
    vec![
        case(
            "malformed JSON",
            Some(JSON),
            r#"{"email":"#,
            400,
            "malformed_body",
            None,
        ),
        case("empty body", Some(JSON), "", 400, "malformed_body", None),
        case(
            "JSON array",
            Some(JSON),
            "[1,2]",
            400,
            "malformed_body",
            None,
        ),
        case(
            "invalid UTF-8 in JSON",
            Some(JSON),
            b"{\"email\":\"a\xff@example.com\",\"password\":\"correct horse\"}".to_vec(),
            400,
            "malformed_body",
            None,
        ),
        case(
            "invalid UTF-8 in a form",
            Some(FORM),
            "email=a%FF%40example.com&password=correct+horse",
            400,
            "malformed_body",
            None,
        ),
        case(
            "wrong type for email",
            Some(JSON),
            json(j!({"email": 42, "password": "correct horse"})),
            422,
            "invalid_field",
            Some("email"),
        ),
        case(
            "wrong type for password",
            Some(JSON),
            json(j!({"email": "a@example.com", "password": ["x"]})),
            422,
            "invalid_field",
            Some("password"),
        ),
        case(
            "missing password",
            Some(JSON),
            json(j!({"email": "a@example.com"})),
            422,
            "invalid_field",
            Some("password"),
        ),
        case(
            "missing everything",
            Some(JSON),
            "{}",
            422,
            "invalid_field",
            Some("email"),
        ),
        case(
            "unknown field",
            Some(JSON),
            json(j!({"email": "a@example.com", "password": "correct horse", "is_admin": true})),
            400,
            "unknown_field",
            Some("is_admin"),
        ),
        case(
            "field given twice in a form",
            Some(FORM),
            "email=a%40example.com&email=b%40example.com&password=correct+horse",
            400,
            "malformed_body",
            None,
        ),
        case(
            "body over the limit",
            Some(JSON),
            json(j!({"email": "a@example.com", "password": "x".repeat(20_000)})),
            413,
            "body_too_large",
            None,
        ),
        case(
            "email of 1,000 characters",
            Some(JSON),
            json(j!({"email": long_email, "password": "correct horse"})),
            422,
            "invalid_field",
            Some("email"),
        ),
        case(
            "password of 10,000 characters",
            Some(JSON),
            json(j!({"email": "a@example.com", "password": "x".repeat(10_000)})),
            422,
            "invalid_field",
            Some("password"),
        ),
        case(
            "short password",
            Some(JSON),
            json(j!({"email": "a@example.com", "password": "1234567"})),
            422,
            "invalid_field",
            Some("password"),
        ),
        case(
            "CR/LF in email (header injection)",
            Some(JSON),
            json(
                j!({"email": "a@example.com\r\nBcc: victim@example.com", "password": "correct horse"}),
            ),
            422,
            "invalid_field",
            Some("email"),
        ),
        case(
            "CR/LF in name (header injection)",
            Some(JSON),
            json(
                j!({"email": "a@example.com", "password": "correct horse", "name": "Ada\r\nBcc: victim@example.com"}),
            ),
            422,
            "invalid_field",
            Some("name"),
        ),
        case(
            "NUL in email",
            Some(JSON),
            json(j!({"email": "a\u{0}@example.com", "password": "correct horse"})),
            422,
            "invalid_field",
            Some("email"),
        ),
        case(
            "NUL in name",
            Some(JSON),
            json(j!({"email": "a@example.com", "password": "correct horse", "name": "A\u{0}da"})),
            422,
            "invalid_field",
            Some("name"),
        ),
        case(
            "NUL in password",
            Some(JSON),
            json(j!({"email": "a@example.com", "password": "correct\u{0}horse"})),
            422,
            "invalid_field",
            Some("password"),
        ),
        case(
            "SQL in email",
            Some(JSON),
            json(j!({"email": "x@example.com' OR '1'='1", "password": "correct horse"})),
            422,
            "invalid_field",
            Some("email"),
        ),
        case(
            "no content type",
            None,
            json(j!({"email": "a@example.com", "password": "correct horse"})),
            415,
            "unsupported_media_type",
            None,
        ),
        case(
            "wrong content type",
            Some("text/plain"),
            "email=a@example.com",
            415,
            "unsupported_media_type",
            None,
        ),
        case(
            "multipart form",
            Some("multipart/form-data; boundary=x"),
            "--x--",
            415,
            "unsupported_media_type",
            None,
        ),
    ]
}

async fn every_bad_input_is_refused_cleanly_and_writes_nothing(db: TestDb) {
    let app = app_on(&db).spawn().await;
    for path in ["/register", "/register/async", "/register/sync"] {
        for case in cases() {
            // A form client that asks for JSON gets JSON (a browser gets the HTML page).
            let mut request = app
                .client
                .post(app.url(path))
                .header("accept", "application/json")
                .body(case.body.clone());
            if let Some(content_type) = case.content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await.expect("server answers (never panics)");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            assert_eq!(status, case.status, "{} on {path}: {body}", case.what);
            assert_eq!(
                body["error"]["code"], case.code,
                "{} on {path}: {body}",
                case.what
            );
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{}: {body}",
                case.what
            );
            match case.field {
                Some(field) => assert_eq!(body["error"]["field"], field, "{}: {body}", case.what),
                None => assert!(body["error"]["field"].is_null(), "{}: {body}", case.what),
            }
        }
    }
    assert_eq!(app.user_count().await, 0, "no row written");
    assert_eq!(app.job_count().await, 0, "no job written");
    assert_eq!(app.get_json("/health").await.0, 200, "still healthy");
    app.stop().await;
}
on_both_databases!(every_bad_input_is_refused_cleanly_and_writes_nothing);

#[tokio::test]
async fn wrong_method_is_405_with_the_error_shape() {
    let app = app().spawn().await;
    for path in ["/register", "/register/async", "/register/sync"] {
        let response = app.client.put(app.url(path)).send().await.expect("answer");
        assert_eq!(response.status(), 405, "{path}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
    app.stop().await;
}

async fn names_with_sql_or_html_are_stored_literally_and_escaped_on_output(db: TestDb) {
    let app = app_on(&db).spawn().await;
    let name = "Robert'); DROP TABLE users;-- <script>alert(1)</script>";

    let response = app
        .post_json("/register", serde_json::json!({"email": "bobby@example.com", "password": "correct horse", "name": name}))
        .await;

    assert_eq!(
        response.status(),
        201,
        "a name may hold quotes and brackets"
    );
    let stored: String = with_db!(&app.pool, pool => {
        sqlx::query_scalar("SELECT name FROM users")
            .fetch_one(pool)
            .await
            .expect("row")
    });
    assert_eq!(stored, name);
    let inbox = app.inbox.clone().expect("inbox");
    let mails = wait_for_mails(&inbox, 1, std::time::Duration::from_secs(10)).await;
    assert!(
        !mails[0].html.contains("<script>"),
        "HTML mail escapes the name"
    );
    assert!(
        mails[0].html.contains("alert(1)"),
        "the name is there, escaped"
    );
    assert!(
        mails[0].text.contains(name),
        "the text part carries it as written"
    );
    app.stop().await;
}
on_both_databases!(names_with_sql_or_html_are_stored_literally_and_escaped_on_output);

proptest! {
    #[test]
    fn email_parser_never_panics_and_accepted_values_round_trip(raw in "\\PC{0,300}") {
        if let Ok(email) = Email::parse(&raw) {
            let again = Email::parse(email.as_str()).expect("an accepted value parses again");
            prop_assert_eq!(again.as_str(), email.as_str());
            prop_assert_eq!(email.key(), email.as_str().to_lowercase());
            prop_assert!(!email.as_str().chars().any(char::is_control));
            prop_assert!(email.as_str().len() <= 254);
        }
    }

    #[test]
    fn address_like_strings_are_accepted(local in "[a-z0-9._%+-]{1,30}", domain in "[a-z0-9-]{1,20}\\.[a-z]{2,6}") {
        prop_assume!(!local.starts_with('.') && !local.ends_with('.') && !local.contains(".."));
        prop_assume!(!domain.starts_with('-') && !domain.contains("-."));
        let raw = format!(" {local}@{domain} ");
        let email = Email::parse(&raw);
        prop_assert!(email.is_ok(), "{raw:?} refused");
    }

    #[test]
    fn name_parser_never_panics_and_accepted_values_round_trip(raw in any::<String>()) {
        if let Ok(Some(name)) = DisplayName::parse(&raw) {
            let again = DisplayName::parse(name.as_str()).expect("parses again").expect("not empty");
            prop_assert_eq!(again.as_str(), name.as_str());
            prop_assert!(!name.as_str().chars().any(char::is_control));
            prop_assert!(name.as_str().chars().count() <= 100);
        }
    }
}
