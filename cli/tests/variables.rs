//! `lic var`: device variables set on the command line, before and after activation,
//! the files that carry them, refusals that change nothing and say what to do.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, error_code, stderr, stdout};
use lic_core::format::{self, ActivationRequest, Deactivation, UsageReport};
use lic_core::keys::Keyring;
use lic_fixtures::stand_in::StandIn;

fn payload<T: format::Payload>(path: &std::path::Path) -> T {
    format::open::<T>(&std::fs::read(path).unwrap(), &Keyring::new())
        .unwrap()
        .into_payload()
}

#[test]
fn variables_set_before_activation_go_in_the_request_and_later_ones_in_the_next_files() {
    let env = Env::new();
    let portal = StandIn::new(chrono::Utc::now());
    // Before activation the store knows no product: it must be named.
    let out = env.lic(&["var", "set", "site", "Lab 2"]);
    assert_eq!(
        error_code(&out).as_deref(),
        Some("product-needed"),
        "{out:?}"
    );
    assert!(stderr(&out).contains("--product PRODUCT"), "{out:?}");
    assert!(!env.store().exists(), "a refusal made no store");
    // Listing or unsetting on a store that does not exist makes none either.
    let listed = env.ok(&["--product", "photo-pro", "var", "list"]);
    assert!(
        listed.contains("no variables are set for 'photo-pro'"),
        "{listed}"
    );
    assert!(!env.store().exists());

    let set = env.ok(&["--product", "photo-pro", "var", "set", "site", "Lab 2"]);
    assert!(set.contains("set 'site' for 'photo-pro'"), "{set}");
    env.ok(&["--product", "photo-pro", "var", "set", "note", "two\nlines"]);
    env.activate(&portal);
    let request: ActivationRequest = payload(&env.path("photo-pro.req"));
    assert_eq!(request.variables["site"], "Lab 2");
    assert_eq!(request.variables["note"], "two\nlines");

    // After activation the product is found without --product.
    let listed = env.ok(&["var", "list"]);
    assert_eq!(listed, "note = two\\u{a}lines\nsite = Lab 2\n");
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["--format", "json", "var", "list"])).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "format": 1,
            "product": "photo-pro",
            "variables": {"note": "two\nlines", "site": "Lab 2"},
        })
    );

    env.ok(&["var", "set", "site", "Lab 3"]);
    env.ok(&["var", "unset", "note"]);
    let again = env.ok(&["var", "unset", "note"]);
    assert!(again.contains("'note' is not set"), "{again}");
    env.ok(&["usage-report", "--out", "u.usage"]);
    let report: UsageReport = payload(&env.path("u.usage"));
    assert_eq!(
        report.variables,
        [("site".to_string(), "Lab 3".to_string())].into()
    );

    env.ok(&["var", "set", "operator", "ada"]);
    env.ok(&["offline-deactivate", "--out", "d.deact"]);
    let deactivation: Deactivation = payload(&env.path("d.deact"));
    assert_eq!(deactivation.variables["operator"], "ada");
    assert_eq!(deactivation.variables["site"], "Lab 3");
}

#[test]
fn variables_beyond_the_limits_are_refused_with_what_to_do_and_change_nothing() {
    let env = Env::new();
    env.ok(&["--product", "photo-pro", "var", "set", "site", "Lab 2"]);
    let before = env.state();
    let long = "x".repeat(1025);
    for (args, code, hint) in [
        (
            vec!["var", "set", "bad name", "x"],
            "variable-name-invalid",
            "letters, digits",
        ),
        (
            vec!["var", "set", "v", long.as_str()],
            "variable-value-too-long",
            "1024 bytes",
        ),
    ] {
        let mut all = vec!["--product", "photo-pro"];
        all.extend(args);
        let out = env.lic(&all);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert_eq!(error_code(&out).as_deref(), Some(code), "{out:?}");
        assert!(stderr(&out).contains(hint), "{out:?}");
        assert_eq!(env.state(), before, "a refusal changed the store");
        // JSON too.
        let mut json = vec!["--format", "json"];
        json.extend(all);
        let out = env.lic(&json);
        let doc: serde_json::Value = serde_json::from_str(&stderr(&out)).unwrap();
        assert_eq!(doc["error"]["code"], code, "{doc}");
        assert!(stdout(&out).is_empty());
    }
    for i in 1..64 {
        env.ok(&[
            "--product",
            "photo-pro",
            "var",
            "set",
            &format!("k{i}"),
            "v",
        ]);
    }
    let before = env.state();
    let out = env.lic(&["--product", "photo-pro", "var", "set", "k64", "v"]);
    assert_eq!(
        error_code(&out).as_deref(),
        Some("too-many-variables"),
        "{out:?}"
    );
    assert!(stderr(&out).contains("lic var unset NAME"), "{out:?}");
    assert_eq!(env.state(), before);
}
