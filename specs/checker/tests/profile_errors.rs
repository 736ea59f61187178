//! Mistakes in profiles, alone and against the specs.

mod common;

use common::assert_errors;
use common::Fixture;
use common::ECHO;
use common::ECHO_CLIENT;

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

/// `echo_client` with its need of `echo` optional.
fn optional_echo_client() -> String {
    ECHO_CLIENT.replace(
        "echo = \"echo\"",
        "echo = { service = \"echo\", optional = true }",
    )
}

#[test]
fn an_optional_need_may_have_no_exporter() {
    let fixture = Fixture::valid();
    fixture.write("specs/echo_client.toml", &optional_echo_client());
    fixture.write(
        "specs/profiles/alone.toml",
        r#"components = ["hello", "echo_client"]"#,
    );
    let system = fixture.load();
    assert!(system.component("echo_client").unwrap().needs[0].optional);
}

#[test]
fn an_optional_need_still_starts_after_its_exporter() {
    let fixture = Fixture::valid();
    fixture.write("specs/echo_client.toml", &optional_echo_client());
    fixture.write(
        "specs/profiles/default.toml",
        r#"components = ["echo_client", "echo"]"#,
    );
    assert_errors(
        fixture.errors(),
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
            "profile specs/profiles/test.toml: field 'author': unknown field (known fields: description, components, config, user)",
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

/// `default.toml` with `[config...]` lines appended.
fn default_with(config: &str) -> Vec<String> {
    profile_errors(
        "specs/profiles/default.toml",
        &format!("{}\n{config}", common::DEFAULT_PROFILE),
    )
}

#[test]
fn config_override_of_a_component_the_profile_does_not_start() {
    let fixture = Fixture::valid();
    fixture.write(
        "specs/profiles/small.toml",
        "components = [\"echo\", \"echo_client\"]\n[config.hello]\ngreeting = \"yo\"\n",
    );
    assert_errors(
        fixture.errors(),
        &["profile specs/profiles/small.toml: field 'config.hello': sets config of component 'hello', which this profile does not start (components = [echo, echo_client])"],
    );
    assert_errors(
        default_with("[config.echo_clent]\nrounds = 5\n"),
        &["profile specs/profiles/default.toml: field 'config.echo_clent': sets config of component 'echo_clent', which this profile does not start (components = [hello, echo, echo_client]) (did you mean 'echo_client'?)"],
    );
}

#[test]
fn config_override_keys_must_be_the_components_own() {
    assert_errors(
        default_with("[config.echo_client]\nround = 5\n"),
        &["profile specs/profiles/default.toml: field 'config.echo_client.round': component 'echo_client' has no config key 'round' in specs/echo_client.toml (its keys: rounds) (did you mean 'rounds'?)"],
    );
    assert_errors(
        default_with("[config.echo]\nverbose = true\n"),
        &["profile specs/profiles/default.toml: field 'config.echo.verbose': component 'echo' has no config key 'verbose' in specs/echo.toml (it has no [config])"],
    );
}

#[test]
fn config_override_values_keep_the_specs_type() {
    assert_errors(
        default_with("[config.echo_client]\nrounds = \"5\"\n"),
        &["profile specs/profiles/default.toml: field 'config.echo_client.rounds': expected an integer like 'rounds = 1000' in specs/echo_client.toml; got a string (\"5\")"],
    );
    assert_errors(
        default_with("[config.hello]\ngreeting = true\n"),
        &["profile specs/profiles/default.toml: field 'config.hello.greeting': expected a string like 'greeting = \"hi\"' in specs/hello.toml; got a bool (true)"],
    );
    assert_errors(
        default_with("[config.echo_client]\nrounds = 5.0\n"),
        &["profile specs/profiles/default.toml: field 'config.echo_client.rounds': expected an integer like 'rounds = 1000' in specs/echo_client.toml; got a float (5.0)"],
    );
}

#[test]
fn config_overrides_are_tables_of_scalars() {
    assert_errors(
        default_with("config = 5\n"),
        &["profile specs/profiles/default.toml: field 'config': expected a table (`[config]` with `key = value` lines); got integer 5"],
    );
    assert_errors(
        default_with("[config]\necho_client = 5\n"),
        &["profile specs/profiles/default.toml: field 'config.echo_client': expected a table (`[config.echo_client]` with `key = value` lines naming the component's [config] keys); got integer 5"],
    );
    assert_errors(
        default_with("[config.echo_client]\nrounds = [1, 2]\n"),
        &["profile specs/profiles/default.toml: field 'config.echo_client.rounds': expected an integer, string, bool or float; got an array"],
    );
    assert_errors(
        default_with("[config.Echo]\nrounds = 1\n"),
        &["profile specs/profiles/default.toml: field 'config.Echo': invalid component name: 'Echo' is not snake_case (lowercase letters and digits, words joined by single underscores, starting with a letter)"],
    );
}

#[test]
fn the_user_list_names_components_of_the_profile() {
    assert_errors(
        profile_errors(
            "specs/profiles/default.toml",
            "components = [\"echo\", \"echo_client\"]\nuser = [\"echo\", \"hello\"]",
        ),
        &["profile specs/profiles/default.toml: field 'user': 'hello' is not one of the profile's components"],
    );
}

#[test]
fn a_user_mode_component_takes_a_config_override() {
    // Its image is built with the profile's values (host/src/user_images.rs).
    let fixture = Fixture::valid();
    fixture.write(
        "specs/profiles/default.toml",
        "components = [\"echo\", \"echo_client\"]\nuser = [\"echo_client\"]\n[config.echo_client]\nrounds = 5",
    );
    let system = fixture.load();
    let profile = system.profile("default").expect("profile default");
    let o = profile.config_for("echo_client").expect("its override");
    assert_eq!(o.entries[0].value.rust_expr(), "5");
    // Its keys are checked as in the kernel.
    assert_errors(
        profile_errors(
            "specs/profiles/default.toml",
            "components = [\"echo\", \"echo_client\"]\nuser = [\"echo_client\"]\n[config.echo_client]\nround = 5",
        ),
        &["profile specs/profiles/default.toml: field 'config.echo_client.round': component 'echo_client' has no config key 'round' in specs/echo_client.toml (its keys: rounds) (did you mean 'rounds'?)"],
    );
}

/// A server named `linux` with `vcpus` in its config, beside the valid
/// fixture, and `default.toml` starting it with `lines` appended.
fn linux_vcpus_errors(own: &str, lines: &str) -> Vec<String> {
    let fixture = Fixture::valid();
    fixture.component(
        "servers",
        &format!(
            "{}\n[config]\nvcpus = {own}\n",
            ECHO.replace("\"echo\"\nkind", "\"linux\"\nkind")
                .replace("[\"echo\"]", "[\"linux\"]")
        ),
    );
    fixture.write(
        "specs/profiles/default.toml",
        &format!("components = [\"hello\", \"linux\"]\n{lines}"),
    );
    match starina_spec::load_all(&fixture.root) {
        Ok(_) => Vec::new(),
        Err(errors) => common::messages(&errors),
    }
}

#[test]
fn linux_vcpus_are_one_to_eight_in_the_spec_and_in_profiles() {
    assert_errors(linux_vcpus_errors("1", "[config.linux]\nvcpus = 8\n"), &[]);
    assert_errors(
        linux_vcpus_errors("0", ""),
        &["spec specs/linux.toml: field 'config.vcpus': expected 1..=8 (the guest's CPUs: one vCPU thread each, one local APIC each in the VMM); got 0"],
    );
    assert_errors(
        linux_vcpus_errors("2", "[config.linux]\nvcpus = 9\n"),
        &["profile specs/profiles/default.toml: field 'config.linux.vcpus': expected 1..=8 (the guest's CPUs: one vCPU thread each, one local APIC each in the VMM); got 9"],
    );
}
