//! Users beyond the users file: a real OpenLDAP server (slapd, started
//! here on loopback with its own database) and an HTTP identity hook (a
//! real HTTP server on loopback), logged in through by real SFTP (russh)
//! and FTP (suppaftp) clients, with the homes checked in the bucket.

use crate::common;

use common::ftp::client;
use common::gateway::{TestGateway, put, sftp, ssh_key, ssh_password, start_with_tables};
use common::ldap::{Person, SERVICE_DN, SERVICE_PASSWORD, Slapd};
use common::receiver::Receiver;
use russh::keys::{Algorithm, PrivateKey};
use std::sync::Arc;
use std::time::Duration;
use suppaftp::tokio::AsyncFtpStream;

const LENA_PW: &str = "lena-pw";
const HOOK_SECRET: &str = "hook-secret";

/// Many failures from 127.0.0.1 in one test must not ban it.
const NO_BANS: &str = "[security]\nban_threshold = 1000\n";

fn people<'a>(lena_key: &'a str) -> Vec<Person<'a>> {
    vec![
        Person {
            uid: "lena",
            password: LENA_PW,
            groups: &["partners"],
            attrs: vec![("departmentNumber", "sales")],
        },
        Person {
            uid: "omar",
            password: "omar-pw",
            groups: &["auditors"],
            attrs: vec![("departmentNumber", "audit")],
        },
        Person {
            uid: "zoe",
            password: "zoe-pw",
            groups: &["staff"],
            attrs: vec![],
        },
        Person {
            uid: "mallory",
            password: "mallory-pw",
            groups: &["partners"],
            attrs: vec![("departmentNumber", "../../alice")],
        },
        Person {
            uid: "keyed",
            password: "keyed-pw",
            groups: &["partners"],
            attrs: vec![("departmentNumber", "sales"), ("sshPublicKey", lena_key)],
        },
    ]
}

/// partners get a home of their own and their department's folder;
/// auditors (matched by DN) may only read.
const TEMPLATES: &str = r#"
[[auth.templates]]
name = "partners"
ldap_groups = ["partners"]
home = "store:/ldap/{user}"

[[auth.templates.mounts]]
path = "/team"
target = "store:/teams/{departmentNumber}"

[[auth.templates]]
name = "auditors"
ldap_groups = ["CN=Auditors,ou=groups,dc=example,dc=com"]
home = "store:/ldap/{user}"
permissions = ["list", "download"]
"#;

/// `[auth]` with LDAP found by a search as the service account.
fn ldap_search(url: &str, s: &Slapd, extra: &str) -> String {
    format!(
        r#"
[auth]
cache_time = "0"
{extra}

[auth.ldap]
url = "{url}"
ca_file = "{ca}"
bind_dn = "{SERVICE_DN}"
bind_password = "{SERVICE_PASSWORD}"
base = "ou=people,dc=example,dc=com"
filter = "(&(objectClass=inetOrgPerson)(uid={{user}}))"
group_base = "ou=groups,dc=example,dc=com"
timeout = "2s"
{TEMPLATES}
"#,
        ca = s.ca_file.display()
    )
}

async fn ssh_login(g: &TestGateway, user: &str, password: &str) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    ssh_password(stream, user, password).await.map(|_| ())
}

async fn ftp_login(g: &TestGateway, user: &str, password: &str) -> Result<AsyncFtpStream, String> {
    let mut ftp = AsyncFtpStream::connect(g.ftp).await.unwrap();
    match ftp.login(user, password).await {
        Ok(()) => Ok(ftp),
        Err(e) => Err(e.to_string()),
    }
}

/// Every key under `prefix`, with its bytes.
fn objects(g: &TestGateway, prefix: &str) -> String {
    g.s3(&format!(
        "r = s3.list_objects_v2(Bucket=bucket, Prefix='{prefix}')\n\
         print(sorted((o['Key'], s3.get_object(Bucket=bucket, Key=o['Key'])['Body'].read().decode()) \
         for o in r.get('Contents', []) if not o['Key'].endswith('/')))"
    ))
    .trim()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_search_logs_in_over_sftp_and_ftp_each_into_a_prefix_of_their_own() {
    client(async {
        let s = Slapd::start(&people("none"));
        let g = start_with_tables(&ldap_search(&s.url, &s, "")).await;

        let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
        let h = ssh_password(stream, "lena", LENA_PW).await.unwrap();
        let sf = sftp(&h).await;
        put(&sf, "/a.txt", b"lena over sftp").await;
        put(&sf, "/team/plan.txt", b"the sales plan").await;

        let mut ftp = ftp_login(&g, "lena", LENA_PW).await.unwrap();
        ftp.transfer_type(suppaftp::types::FileType::Binary)
            .await
            .unwrap();
        ftp.put_file("b.txt", &mut &b"lena over ftp"[..])
            .await
            .unwrap();
        ftp.quit().await.unwrap();

        // omar is an auditor: he logs in to his own home, and may not write.
        let mut ftp = ftp_login(&g, "omar", "omar-pw").await.unwrap();
        assert!(ftp.put_file("c.txt", &mut &b"no"[..]).await.is_err());
        ftp.quit().await.unwrap();

        assert_eq!(
            objects(&g, "ldap/"),
            "[('ldap/lena/a.txt', 'lena over sftp'), ('ldap/lena/b.txt', 'lena over ftp')]"
        );
        assert_eq!(
            objects(&g, "teams/"),
            "[('teams/sales/plan.txt', 'the sales plan')]"
        );
        // The connection was StartTLS: the server saw the extended operation.
        assert!(
            s.log().contains("oid=1.3.6.1.4.1.1466.20037"),
            "{}",
            s.log()
        );
        g.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_bind_dn_template_logs_in_without_a_service_account() {
    client(async {
        let s = Slapd::start(&people("none"));
        let tables = format!(
            r#"
{NO_BANS}
[auth]
cache_time = "0"

[auth.ldap]
url = "{url}"
ca_file = "{ca}"
user_dn = "uid={{user}},ou=people,dc=example,dc=com"
group_base = "ou=groups,dc=example,dc=com"
{TEMPLATES}
"#,
            url = s.url,
            ca = s.ca_file.display()
        );
        let g = start_with_tables(&tables).await;
        ssh_login(&g, "lena", LENA_PW).await.unwrap();
        let ftp = ftp_login(&g, "lena", LENA_PW).await;
        assert!(ftp.is_ok(), "{:?}", ftp.err());

        let refused = futures::future::join_all([
            ssh_login(&g, "lena", "wrong"),
            ssh_login(&g, "lena", ""),
            ssh_login(&g, "zoe", "zoe-pw"),
            // A name that would add an RDN: escaped, it names no entry.
            ssh_login(&g, "lena,ou=people", LENA_PW),
        ])
        .await;
        assert!(refused.iter().all(Result::is_err), "{refused:?}");
        // The empty password never reached the directory as a bind (which
        // LDAP would take for an anonymous one, and accept).
        let binds_with = |dn: &str| {
            s.log()
                .matches(&format!("BIND dn=\"{dn}\" method=128"))
                .count()
        };
        let lena = "uid=lena,ou=people,dc=example,dc=com";
        assert_eq!(binds_with(lena), 3, "{}", s.log());
        assert!(
            s.log().contains(r"uid=lena\2Cou\3Dpeople,ou=people"),
            "{}",
            s.log()
        );
        g.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_refuses_wrong_passwords_other_groups_injected_names_and_escaping_attributes() {
    client(async {
        let s = Slapd::start(&people("none"));
        let g = start_with_tables(&format!("{NO_BANS}{}", ldap_search(&s.url, &s, ""))).await;
        let g = &g;
        let attempts = [
            ("lena", "wrong"),
            ("lena", ""),
            // In no group a template maps.
            ("zoe", "zoe-pw"),
            // Filter injections: unescaped, each finds lena's entry (and her
            // password is right), or every entry.
            ("lena)(uid=*", LENA_PW),
            ("len*", LENA_PW),
            ("*", LENA_PW),
            ("*)(uid=*", LENA_PW),
            // In a mapped group, but the department would lead out of teams/.
            ("mallory", "mallory-pw"),
        ];
        let results = futures::future::join_all(
            attempts.iter().map(|(user, pw)| async move { (user, ssh_login(g, user, pw).await) }),
        )
        .await;
        for (user, result) in &results {
            assert!(result.is_err(), "{user} logged in");
        }
        let ftp = ftp_login(g, "len*", LENA_PW).await;
        assert!(ftp.is_err());
        // What reached the directory: the names escaped (RFC 4515).
        let filters = s.filters();
        for escaped in [r"(uid=lena\29\28uid=\2A)", r"(uid=len\2A)", r"(uid=\2A)", r"(uid=\2A\29\28uid=\2A)"] {
            assert!(
                filters.iter().any(|f| f.contains(escaped)),
                "{escaped} not in {filters:#?}"
            );
        }
        assert!(!filters.iter().any(|f| f.contains("(uid=*)")), "{filters:#?}");
        // Nothing was made for any of them.
        assert_eq!(objects(g, ""), "[]");
        let listed = g.s3(
            "print(sorted(o['Key'] for o in s3.list_objects_v2(Bucket=bucket).get('Contents', [])))",
        );
        assert!(!listed.contains("mallory") && !listed.contains("ldap/"), "{listed}");
        // A right login still works after all of them.
        ssh_login(g, "lena", LENA_PW).await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_public_key_login_reads_ssh_public_key_over_ldaps() {
    let key = Arc::new(PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap());
    let other = Arc::new(PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap());
    let public = key.public_key().to_openssh().unwrap();
    let s = Slapd::start(&people(&public));
    let g = start_with_tables(&ldap_search(&s.ldaps_url, &s, "")).await;

    let h = ssh_key(g.addr, "keyed", key.clone()).await.unwrap();
    let sf = sftp(&h).await;
    put(&sf, "/by-key.txt", b"signed in").await;
    assert!(ssh_key(g.addr, "keyed", other).await.is_err());
    // lena's entry holds no key.
    assert!(ssh_key(g.addr, "lena", key).await.is_err());
    assert_eq!(
        objects(&g, "ldap/"),
        "[('ldap/keyed/by-key.txt', 'signed in')]"
    );
    // Over LDAPS: no StartTLS was needed.
    assert!(!s.log().contains("oid=1.3.6.1.4.1.1466.20037"));
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_down_or_stalled_fails_its_logins_and_file_users_go_on() {
    client(async {
        let mut s = Slapd::start(&people("none"));
        let g = start_with_tables(&ldap_search(&s.url, &s, "")).await;
        ssh_login(&g, "lena", LENA_PW).await.unwrap();
        s.stop();
        // More failures than ban_threshold (5): the directory's, not the
        // client's, so they do not ban 127.0.0.1.
        let down = futures::future::join_all((0..6).map(|_| ssh_login(&g, "lena", LENA_PW))).await;
        assert!(down.iter().all(Result::is_err), "{down:?}");
        assert!(ftp_login(&g, "lena", LENA_PW).await.is_err());
        let (_h, alice) = common::gateway::alice(&g).await;
        put(&alice, "/still.txt", b"file users go on").await;
        assert_eq!(
            objects(&g, "alice/"),
            "[('alice/still.txt', 'file users go on')]"
        );
        g.stop().await;

        // A directory that accepts connections and never answers.
        let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ldap://{}", stalled.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = stalled.accept().await {
                held.push(socket);
            }
        });
        let g = start_with_tables(&ldap_search(&url, &s, "")).await;
        let (lena, alice) = tokio::join!(
            ssh_login(&g, "lena", LENA_PW),
            ssh_login(&g, "alice", "demo")
        );
        alice.unwrap();
        // Refused when the directory's timeout passed: an answer to the
        // client, not the connection closed at login_timeout.
        assert_eq!(lena, Err("authentication failed".to_string()));
        g.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_cache_saves_the_directory_and_a_changed_password_takes_effect_when_it_ends() {
    client(async {
        let s = Slapd::start(&people("none"));
        let tables =
            ldap_search(&s.url, &s, "").replace("cache_time = \"0\"", "cache_time = \"2s\"");
        let g = start_with_tables(&tables).await;
        ssh_login(&g, "lena", LENA_PW).await.unwrap();
        // The entry was made before the login was answered.
        let first = tokio::time::Instant::now();
        let asked = s.connections();
        for _ in 0..5 {
            ssh_login(&g, "lena", LENA_PW).await.unwrap();
        }
        assert_eq!(s.connections(), asked, "cached logins asked the directory");

        s.set_password("lena", "new-pw").await;
        // The new password is not in the cache: the directory is asked and says yes.
        ssh_login(&g, "lena", "new-pw").await.unwrap();
        // The old one is, until its entry ends.
        ssh_login(&g, "lena", LENA_PW).await.unwrap();
        tokio::time::sleep_until(first + Duration::from_secs(2)).await;
        assert!(ssh_login(&g, "lena", LENA_PW).await.is_err());
        ssh_login(&g, "lena", "new-pw").await.unwrap();
        g.stop().await;
    })
    .await
}

/// The hook's answer for each login: henry's password is "hook-pw", his
/// key `key` (if any); every other name gets the home named in `homes`.
fn hook(url: &str, extra: &str) -> String {
    format!(
        r#"
{NO_BANS}
[auth]
{extra}

[auth.http]
url = "{url}"
secret = "{HOOK_SECRET}"
timeout = "1s"
"#
    )
}

fn answer_for_henry(
    key: Option<String>,
) -> impl Fn(&serde_json::Value) -> (u16, String) + Send + Sync {
    move |q| {
        let keys: Vec<String> = key.iter().cloned().collect();
        let ok = q["user"] == "henry" && (q["password"] == "hook-pw" || q["method"] == "publickey");
        if ok {
            let def = serde_json::json!({
                "home": "store:/hooked/henry",
                "permissions": ["*"],
                "max_sessions": 50,
                "authorized_keys": keys,
            });
            (200, def.to_string())
        } else if q["user"] == "henry" {
            (403, String::new())
        } else {
            (404, String::new())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_logs_in_with_the_definition_it_answers() {
    client(async {
        let r = Receiver::start().await;
        let key = Arc::new(PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap());
        let other = Arc::new(PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap());
        r.answer_with(answer_for_henry(Some(
            key.public_key().to_openssh().unwrap(),
        )));
        let g = start_with_tables(&hook(&r.url(), "cache_time = \"0\"")).await;

        let stream = tokio::net::TcpStream::connect(g.addr).await.unwrap();
        let h = ssh_password(stream, "henry", "hook-pw").await.unwrap();
        put(&sftp(&h).await, "/in.txt", b"from the hook").await;
        let asked = r.requests()[0].clone();
        assert_eq!(asked.header("bucketgate-secret"), HOOK_SECRET);
        assert_eq!(
            asked.json(),
            serde_json::json!({"user": "henry", "method": "password", "password": "hook-pw",
                               "protocol": "sftp", "ip": "127.0.0.1"})
        );

        let mut ftp = ftp_login(&g, "henry", "hook-pw").await.unwrap();
        ftp.quit().await.unwrap();
        assert_eq!(r.requests().last().unwrap().json()["protocol"], "ftp");

        let h = ssh_key(g.addr, "henry", key.clone()).await.unwrap();
        drop(h);
        let by_key = r
            .requests()
            .into_iter()
            .rfind(|q| q.json()["method"] == "publickey")
            .unwrap();
        assert_eq!(
            by_key.json()["public_key"],
            key.public_key().to_openssh().unwrap()
        );
        assert!(by_key.json().get("password").is_none());

        // Refusals: a wrong password (403), a key not in the answer, an unknown name (404).
        assert!(ssh_login(&g, "henry", "wrong").await.is_err());
        assert!(ssh_key(g.addr, "henry", other).await.is_err());
        assert!(ssh_login(&g, "nobody", "x").await.is_err());
        // A name of the users file is the file's: the hook is never asked.
        let before = r.arrived();
        assert!(ssh_login(&g, "alice", "wrong").await.is_err());
        ssh_login(&g, "alice", "demo").await.unwrap();
        assert_eq!(r.arrived(), before);

        assert_eq!(
            objects(&g, "hooked/"),
            "[('hooked/henry/in.txt', 'from the hook')]"
        );
        g.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_down_or_slow_fails_its_logins_and_file_users_go_on() {
    client(async {
        // Nothing listens there.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let g = start_with_tables(&hook(&format!("http://{closed}/login"), "")).await;
        assert!(ssh_login(&g, "henry", "hook-pw").await.is_err());
        assert!(ftp_login(&g, "henry", "hook-pw").await.is_err());
        ssh_login(&g, "alice", "demo").await.unwrap();
        g.stop().await;

        let r = Receiver::start().await;
        r.answer_with(answer_for_henry(None));
        let g = start_with_tables(&hook(&r.url(), "")).await;
        r.hold();
        let (henry, alice) = tokio::join!(
            ssh_login(&g, "henry", "hook-pw"),
            ssh_login(&g, "alice", "demo")
        );
        assert!(
            henry.is_err(),
            "a hook that did not answer within 1 s let henry in"
        );
        alice.unwrap();
        assert_eq!(r.arrived(), 1);
        r.release();
        ssh_login(&g, "henry", "hook-pw").await.unwrap();
        g.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_answers_that_reach_outside_their_prefix_are_refused() {
    client(async {
        let r = Receiver::start().await;
        r.answer_with(|q| {
            let user = q["user"].as_str().unwrap_or_default().to_string();
            let def = match user.as_str() {
                "dots" => serde_json::json!({"home": "store:/../other"}),
                "deeper" => serde_json::json!({"home": "store:/hooked/../../other"}),
                "mount" => serde_json::json!({"home": "store:/hooked/mount",
                    "mounts": [{"path": "/x", "target": "store:/../other"}]}),
                "typo" => serde_json::json!({"home": "store:/hooked/typo", "permisions": ["list"]}),
                "remote" => serde_json::json!({"home": "elsewhere:/x"}),
                "nohome" => serde_json::json!({"permissions": ["*"]}),
                "text" => return (200, "yes".to_string()),
                // The name itself is not a user name the file would take.
                _ => serde_json::json!({"home": format!("store:/hooked/{user}")}),
            };
            (200, def.to_string())
        });
        let g = start_with_tables(&hook(&r.url(), "")).await;
        let g = &g;
        let names = ["dots", "deeper", "mount", "typo", "remote", "nohome", "text"];
        // Names no source may give a user (the one rule of user names):
        // refused before the hook is asked.
        let not_names = [
            "a/../b", "x y", "fine\t", "fi\nne", "fi\u{c}ne", "fi\u{200B}ne", "\u{202E}enif",
            "\u{0430}lice",
        ];
        let results = futures::future::join_all(
            names
                .iter()
                .chain(&not_names)
                .map(|n| async move { (n, ssh_login(g, n, "pw").await) }),
        )
        .await;
        for (name, result) in &results {
            assert!(result.is_err(), "{name:?} logged in");
        }
        assert_eq!(r.arrived(), names.len(), "the hook was asked about a name no source may give");
        let listed = g.s3(
            "print(sorted(o['Key'] for o in s3.list_objects_v2(Bucket=bucket).get('Contents', [])))",
        );
        assert_eq!(listed.trim(), "[]");
        // The same hook lets a plain definition in.
        ssh_login(g, "fine", "pw").await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_logins_are_cached_for_cache_time_and_refused_once_it_ends() {
    client(async {
        let r = Receiver::start().await;
        r.answer_with(answer_for_henry(None));
        let g = start_with_tables(&hook(&r.url(), "cache_time = \"2s\"")).await;
        ssh_login(&g, "henry", "hook-pw").await.unwrap();
        // The entry was made before the login was answered.
        let first = tokio::time::Instant::now();
        for _ in 1..20 {
            ssh_login(&g, "henry", "hook-pw").await.unwrap();
        }
        assert_eq!(
            r.arrived(),
            1,
            "20 sessions in a row asked the hook more than once"
        );
        // A wrong password is never taken from the cache: the hook is asked.
        assert!(ssh_login(&g, "henry", "wrong").await.is_err());
        assert_eq!(r.arrived(), 2);

        r.answer_with(|_| (403, String::new()));
        ssh_login(&g, "henry", "hook-pw").await.unwrap();
        assert_eq!(r.arrived(), 2);
        tokio::time::sleep_until(first + Duration::from_secs(2)).await;
        assert!(ssh_login(&g, "henry", "hook-pw").await.is_err());
        assert_eq!(r.arrived(), 3);
        g.stop().await;
    })
    .await
}
