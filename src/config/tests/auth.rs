//! Identity sources: `[auth]`, LDAP, the hook and templates.

use super::*;

#[test]
fn auth_problems_name_their_key_and_line() {
    let text = r#"[remotes.store]
kind = "memory"

[auth]
order = ["file", "ldap", "radius"]

[auth.ldap]
url = "http://ldap.example"
base = "ou=people"
filter = "(uid=someone)"
group_filter = "(member=x)"

[auth.http]
url = "http://accounts.example/login"

[[auth.templates]]
name = "partners"
home = "store:/{user}/{"

[[auth.templates]]
name = "partners"
ldap_groups = ["partners"]
home = "elsewhere:/{user}"
permissions = ["fly"]

[[auth.templates.mounts]]
path = "/"
target = "store:/{ou}"
"#;
    let problems = parse(text).unwrap_err();
    let expect = [
        (
            5,
            "auth.order",
            "[auth.http] is configured but http is not in the order",
        ),
        (
            5,
            "auth.order[2]",
            "\"radius\" is not one of file, ldap, http",
        ),
        (7, "auth.ldap.bind_dn", "is required for a search"),
        (7, "auth.ldap.group_base", "is required"),
        (8, "auth.ldap.url", "is not an ldap:// or ldaps:// URL"),
        (10, "auth.ldap.filter", "must contain {user}"),
        (11, "auth.ldap.group_filter", "must contain {dn}"),
        (13, "auth.http.secret", "is required"),
        (14, "auth.http.url", "must be https://"),
        (16, "auth.templates[0].ldap_groups", "is required"),
        (18, "auth.templates[0].home", "never closed"),
        (21, "auth.templates[1].name", "duplicate template name"),
        (
            23,
            "auth.templates[1].home",
            "names unknown remote \"elsewhere\"",
        ),
        (24, "auth.templates[1].permissions[0]", "fly"),
        (27, "auth.templates[1].mounts[0].path", "cannot be \"/\""),
    ];
    assert_problems(&problems, &expect);
}

#[test]
fn auth_sources_default_to_their_order_and_templates_keep_their_placeholders() {
    let text = r#"[remotes.store]
kind = "memory"

[[users]]
name = "alice"
password = "$argon2id$v=19$m=19456,t=2,p=1$zbURedr/3LNZOR44c0aY6A$+xFJJgF1BW2u2HQD7E1eR9O5gcRrh9Fhtk/e5e317mI"
home = "store:/alice"

[auth.http]
url = "https://accounts.example/login"
secret = "env:PARTNER_SECRET"

[auth.ldap]
url = "ldaps://ldap.example"
user_dn = "uid={user},ou=people,dc=example,dc=com"
group_base = "ou=groups,dc=example,dc=com"

[[auth.templates]]
name = "partners"
ldap_groups = ["partners"]
home = "store:/partners/{user}"
"#;
    let c = parse(text).unwrap();
    use crate::config::SourceKind::*;
    assert_eq!(c.auth.order, [File, Ldap, Http]);
    assert_eq!(c.auth.cache_time, Duration::from_secs(300));
    let ldap = c.auth.ldap.as_ref().unwrap();
    assert!(!ldap.starttls, "ldaps:// needs no StartTLS");
    assert_eq!(ldap.key_attribute, "sshPublicKey");
    assert_eq!(ldap.group_filter, "(member={dn})");
    assert_eq!(c.auth.templates[0].user.home, "store:/partners/{user}");
    let shown = format!("{:?}", c.auth);
    assert!(!shown.contains("from-env"), "{shown}");
    // A definition goes through the checks of a [[users]] table.
    let remotes = c.remotes.keys().cloned().collect();
    let filled = c.auth.templates[0]
        .user
        .filled(&|_| Some("lena".into()))
        .unwrap();
    let user = filled.to_user("lena", &remotes).unwrap();
    assert_eq!(user.home.to_string(), "store:/partners/lena");
    let outside = crate::config::UserDefinition {
        home: "store:/../x".into(),
        ..Default::default()
    };
    assert!(
        outside
            .to_user("lena", &remotes)
            .unwrap_err()
            .contains("home")
    );
}
