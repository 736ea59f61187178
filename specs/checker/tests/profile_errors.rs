//! Mistakes in profiles, alone and against the specs.

mod common;

use common::assert_errors;
use common::Fixture;
use common::ECHO;

fn profile_errors(path: &str, profile: &str) -> Vec<String> {
    let fixture = Fixture::valid();
    fixture.write(path, profile);
    fixture.errors()
}

#[test]
fn every_need_must_be_exported_in_the_profile() {
    assert_errors(
        profile_errors("specs/profiles/test.toml", r#"components = ["hello", "echo_client"]"#),
        &["profile specs/profiles/test.toml: component 'echo_client' needs service 'echo' (field 'echo'), which no component in this profile exports"],
    );
}

#[test]
fn a_service_has_one_exporter() {
    let fixture = Fixture::valid();
    fixture.component(
        "servers",
        &ECHO.replace("\"echo\"\nkind", "\"echo2\"\nkind"),
    );
    fixture.write(
        "specs/profiles/default.toml",
        r#"components = ["echo", "echo2", "echo_client"]"#,
    );
    assert_errors(
        fixture.errors(),
        &["profile specs/profiles/default.toml: service 'echo' is exported by both 'echo' and 'echo2'; a service has one exporter in a profile"],
    );
}

#[test]
fn exporters_start_before_the_components_that_need_them() {
    assert_errors(
        profile_errors("specs/profiles/default.toml", r#"components = ["echo_client", "echo"]"#),
        &["profile specs/profiles/default.toml: component 'echo_client' needs service 'echo' (field 'echo') from 'echo', which starts after it; list 'echo' before 'echo_client' (components start in the listed order)"],
    );
}

#[test]
fn components_must_have_specs() {
    assert_errors(
        profile_errors("specs/profiles/default.toml", r#"components = ["echo", "echo_clinet", "netstack"]"#),
        &[
            "profile specs/profiles/default.toml: field 'components': unknown component 'echo_clinet': there is no specs/echo_clinet.toml (did you mean 'echo_client'?)",
            "profile specs/profiles/default.toml: field 'components': unknown component 'netstack': there is no specs/netstack.toml",
        ],
    );
}

#[test]
fn a_broken_spec_is_not_also_reported_by_its_profiles() {
    let fixture = Fixture::valid();
    fixture.write("specs/echo.toml", "name = 1\n");
    let errors = fixture.errors();
    assert!(
        errors
            .iter()
            .all(|e| e.starts_with("spec specs/echo.toml: ")),
        "{errors:#?}"
    );
}

#[test]
fn components_are_listed_once() {
    assert_errors(
        profile_errors("specs/profiles/default.toml", r#"components = ["echo", "hello", "echo"]"#),
        &["profile specs/profiles/default.toml: field 'components': component 'echo' is listed twice"],
    );
}

#[test]
fn components_is_a_non_empty_list_of_names() {
    assert_errors(
        profile_errors("specs/profiles/test.toml", r#"description = "Nothing.""#),
        &["profile specs/profiles/test.toml: field 'components': required but missing; list the components to start, in start order"],
    );
    assert_errors(
        profile_errors("specs/profiles/test.toml", "components = []"),
        &["profile specs/profiles/test.toml: field 'components': empty; a profile starts at least one component"],
    );
    assert_errors(
        profile_errors("specs/profiles/test.toml", r#"components = "echo""#),
        &["profile specs/profiles/test.toml: field 'components': expected an array of strings; got 'echo'"],
    );
    assert_errors(
        profile_errors("specs/profiles/test.toml", r#"components = ["echo", "Echo Client"]"#),
        &["profile specs/profiles/test.toml: field 'components': invalid component name: 'Echo Client' is not snake_case (lowercase letters and digits, words joined by single underscores, starting with a letter)"],
    );
}

#[test]
fn unknown_profile_fields_are_errors() {
    assert_errors(
        profile_errors("specs/profiles/test.toml", "component = [\"echo\"]\nauthor = \"me\"\n"),
        &[
            "profile specs/profiles/test.toml: field 'components': required but missing; list the components to start, in start order",
            "profile specs/profiles/test.toml: field 'component': unknown field (did you mean 'components'?)",
            "profile specs/profiles/test.toml: field 'author': unknown field (known fields: description, components)",
        ],
    );
}

#[test]
fn profile_names_are_snake_case() {
    assert_errors(
        profile_errors("specs/profiles/Smoke-Test.toml", r#"components = ["hello"]"#),
        &["profile specs/profiles/Smoke-Test.toml: invalid profile name (its file name): 'Smoke-Test' is not snake_case (lowercase letters and digits, words joined by single underscores, starting with a letter)"],
    );
}

#[test]
fn the_default_profile_must_exist() {
    let fixture = Fixture::valid();
    fixture.remove("specs/profiles/default.toml");
    fixture.write("specs/profiles/demo.toml", r#"components = ["hello"]"#);
    assert_errors(
        fixture.errors(),
        &["specs/profiles/default.toml does not exist: the kernel boots profile 'default' when its command line names no profile"],
    );
}

#[test]
fn invalid_profile_toml_names_the_position() {
    assert_errors(
        profile_errors("specs/profiles/test.toml", "components = [\"echo\"\n"),
        &["profile specs/profiles/test.toml: invalid TOML at line 1, column 21: unclosed array, expected `]`"],
    );
}

#[test]
fn a_missing_specs_directory_is_reported() {
    let fixture = Fixture::empty();
    fixture.remove("specs");
    let errors = fixture.errors();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("no specs/ directory in "),
        "{errors:?}"
    );
}
