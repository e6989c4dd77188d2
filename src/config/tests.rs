use super::*;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$zbURedr/3LNZOR44c0aY6A$+xFJJgF1BW2u2HQD7E1eR9O5gcRrh9Fhtk/e5e317mI";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEeZJ0rNzsRMfMxm8M2ljm5O7wxvAnZWrr2D3oGgEh8G alice@laptop";

fn env(name: &str) -> Option<String> {
    (name == "PARTNER_SECRET").then(|| "from-env".to_string())
}

fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    Config::parse(text, &env)
}

/// `problems` are exactly `expect`: each (line, key, part of the message)
/// found, and no other.
fn assert_problems(problems: &[Problem], expect: &[(usize, &str, &str)]) {
    for &(line, key, message) in expect {
        assert!(
            problems
                .iter()
                .any(|p| p.line == line && p.key == key && p.message.contains(message)),
            "no problem at line {line} for {key} containing {message:?}; got:\n{}",
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
}

/// The contract example of DESIGN §2, with real hash and key.
fn full_example() -> String {
    format!(
        r#"
[server]
keys_dir = "keys"
state_dir = "state"
idle_timeout = "10m"
max_sessions = 1000
shutdown_grace = "30s"

[security]
ban_threshold = 5
ban_window = "5m"
ban_time = "15m"

[sftp]
listen = "127.0.0.1:2222"
proxy_protocol = "off"
proxy_allowed = ["10.0.0.0/8"]

[ftp]
listen = "127.0.0.1:2121"
passive_ports = "50000-50100"
passive_host = "auto"
tls_cert = "keys/ftps.pem"
tls_key = "keys/ftps.key"
tls_required = false
implicit_listen = "127.0.0.1:9990"
proxy_protocol = "off"

[admin]
listen = "127.0.0.1:9100"

[remotes.local]
kind = "filesystem"
root = "data"
case_insensitive = false

[remotes.partner]
kind = "s3"
endpoint = "https://s3.partner.example"
bucket = "uploads"
region = ""
access_key_id = "AKIA"
secret_access_key = "env:PARTNER_SECRET"
path_style = true
outbound_ips = ["203.0.113.10", "203.0.113.11"]
use_dedicated_ips = true
max_connections = 0
part_size = "8MiB"
upload_concurrency = 4
preserve_mtime = false
connect_timeout = "5s"
request_timeout = "60s"
retries = 5

[[users]]
name = "alice"
password = "{HASH}"
authorized_keys = ["{KEY}"]
home = "partner:/alice"
permissions = ["*"]
max_sessions = 10
allowed_ips = ["0.0.0.0/0"]

[[users.mounts]]
path = "/reports"
target = "partner:/shared/reports"
read_only = true

[[syncs]]
name = "pull-orders"
local = "local:/inbox"
remote = "partner:/folderB/folderC"
direction = "pull"
after_copy = "keep"
interval = "5m"
transfers = 4
max_delete = 50
delete_empty_folders = true
"#
    )
}

#[test]
fn the_contract_example_parses() {
    let c = parse(&full_example()).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(c.server.idle_timeout, Duration::from_secs(600));
    let RemoteKind::S3(s3) = &c.remotes["partner"].kind else {
        panic!("s3")
    };
    assert_eq!(s3.keys.as_ref().unwrap().secret_access_key, "from-env");
    assert_eq!(s3.region, "us-east-1");
    assert_eq!(c.remotes["partner"].part_size, 8 << 20);
    assert_eq!(
        c.users[0].home,
        Location {
            remote: "partner".into(),
            prefix: "alice".into()
        }
    );
    assert_eq!(c.users[0].mounts[0].path, "/reports");
    assert_eq!(c.users[0].authorized_keys.len(), 1);
    assert_eq!(
        c.users[0].authorized_keys[0].comment().as_str_lossy(),
        "alice@laptop"
    );
    assert_eq!(c.syncs[0].direction, Direction::Pull);
    assert_eq!(c.ftp.as_ref().unwrap().passive_ports, 50000..=50100);
    assert!(
        !format!("{s3:?}").contains("from-env"),
        "the secret must not reach Debug output"
    );
}

/// A secret key's `file:PATH` is the file's text without its trailing
/// newlines; `file:` elsewhere is a value like any other (here a remote
/// named `file`); a file that cannot be read is a problem of its key.
#[test]
fn secret_keys_read_file_values() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "from-a-file\n\n").unwrap();
    let text = full_example()
        .replace(
            "access_key_id = \"AKIA\"",
            &format!("access_key_id = \"file:{}\"", secret.display()),
        )
        .replace("[remotes.local]", "[remotes.file]")
        .replace("\"local:/", "\"file:/");
    let c = parse(&text).unwrap_or_else(|p| panic!("{p:#?}"));
    let RemoteKind::S3(s3) = &c.remotes["partner"].kind else {
        panic!("s3")
    };
    assert_eq!(s3.keys.as_ref().unwrap().access_key_id, "from-a-file");
    assert!(c.remotes.contains_key("file"));

    let missing = text.replace(&secret.display().to_string(), "/nonexistent/secret");
    let line = missing
        .lines()
        .position(|l| l.contains("/nonexistent/secret"))
        .unwrap()
        + 1;
    assert_problems(
        &parse(&missing).unwrap_err(),
        &[(
            line,
            "remotes.partner.access_key_id",
            "cannot read the secret file /nonexistent/secret",
        )],
    );
}

/// Each case: a config, and (line, key fragment, message fragment) expected.
#[test]
fn every_problem_names_its_key_and_line() {
    let text = format!(
        r#"[server]
idle_timeout = "soon"
colour = "blue"

[ftp]
passive_ports = "6000-5000"

[sftp]
proxy_allowed = ["10.0.0.0/33"]

[remotes.local]
kind = "filesystem"
root = "data"
rot = "typo"

[[users]]
name = "bob"
password = "hunter2"
home = "nowhere:/bob"

[[users]]
name = "bob"
password = "{HASH}"
home = "local:/bob2"
authorized_keys = ["ssh-ed25519 not-base64!"]
allowed_ips = ["300.1.1.1"]

[[users.mounts]]
path = "/shared"
target = "local:/s"

[[users.mounts]]
path = "/shared/deeper"
target = "ghost:/x"

[[users.mounts]]
path = "/shared/"
target = "local:/t"

[[syncs]]
name = "s"
local = "local:/a"
remote = "missing:/b"
direction = "two-way"
after_copy = "delete"

[remotes.box]
kind = "s3"
endpoint = "https://s3.example"
bucket = "b"
access_key_id = "a"
secret_access_key = "env:NOT_SET_ANYWHERE"
part_size = "1MiB"
multipart_copy_threshold = "6GiB"
"#
    );
    let problems = parse(&text).expect_err("bad config");
    let expect = [
        (2, "server.idle_timeout", "not a duration"),
        (3, "server.colour", "unknown key"),
        (6, "ftp.passive_ports", "range"),
        (9, "sftp.proxy_allowed[0]", "CIDR"),
        (14, "remotes.local.rot", "unknown key"),
        (18, "users[0].password", "plain-text"),
        (19, "users[0].home", "unknown remote \"nowhere\""),
        (22, "users[1].name", "duplicate user name"),
        (25, "users[1].authorized_keys[0]", "authorized_keys"),
        (26, "users[1].allowed_ips[0]", "CIDR"),
        (34, "users[1].mounts[1].target", "unknown remote \"ghost\""),
        (37, "users[1].mounts[2].path", "overlaps"),
        (43, "syncs[0].remote", "unknown remote \"missing\""),
        (45, "syncs[0].after_copy", "one-way"),
        (
            52,
            "remotes.box.secret_access_key",
            "NOT_SET_ANYWHERE is not set",
        ),
        (53, "remotes.box.part_size", "5 MiB"),
        (54, "remotes.box.multipart_copy_threshold", "5 GiB"),
    ];
    assert_problems(&problems, &expect);
}

#[test]
fn syntax_errors_name_the_line() {
    let problems = parse("[server]\nidle_timeout = \n").unwrap_err();
    assert_eq!(problems[0].line, 2, "{problems:?}");
}

#[test]
fn wrong_types_name_the_line() {
    let problems = parse("[server]\nmax_sessions = \"many\"\n").unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].line, 2, "{problems:?}");
}

#[test]
fn the_shipped_config_is_valid() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
    let c = parse(&text).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(c.users[0].name, "demo");
    assert!(c.sftp.unwrap().listen.ip().is_loopback());
    assert!(c.ftp.unwrap().listen.ip().is_loopback());
}

#[test]
fn hardening_limits_parse_and_the_budget_must_fit_parts() {
    let c = parse(
        "[server]\nlogin_timeout = \"20s\"\nmax_unauthenticated = 100\nmax_unauthenticated_per_source = 4\nmemory_budget = \"256MiB\"\n[sftp]\nmax_channels = 2\nmax_handles = 16\n",
    )
    .unwrap();
    assert_eq!(c.server.login_timeout, Duration::from_secs(20));
    assert_eq!(
        (
            c.server.max_unauthenticated,
            c.server.max_unauthenticated_per_source
        ),
        (100, 4)
    );
    assert_eq!(c.server.memory_budget, 256 << 20);
    let sftp = c.sftp.unwrap();
    assert_eq!((sftp.max_channels, sftp.max_handles), (2, 16));
    // "auto" (the default) is a quarter of the machine, at least 32 MiB.
    let auto = parse("[server]\nmemory_budget = \"auto\"\n").unwrap();
    assert!(auto.server.memory_budget >= 32 << 20);

    let problems = parse(
        "[server]\nmemory_budget = \"64MiB\"\n[remotes.big]\nkind = \"memory\"\npart_size = \"32MiB\"\n",
    )
    .unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].line, 2);
    assert_eq!(problems[0].key, "server.memory_budget");
    assert!(
        problems[0].message.contains("4 x the largest part_size"),
        "{}",
        problems[0].message
    );
}

#[test]
fn webhook_problems_name_their_key_and_line() {
    let text = r#"[[webhooks]]
name = "erp"
url = "ftp://erp.example/"
events = ["upload", "uploaded"]
paths = ["/in/[", "in/**"]
colour = "blue"

[[webhooks]]
name = "erp"
url = "https://user:pw@erp.example/hooks?token=t"
secret = "env:NOT_SET_ANYWHERE"
"#;
    let problems = parse(text).unwrap_err();
    let expect = [
        (1, "webhooks[0].secret", "is required"),
        (3, "webhooks[0].url", "http:// or https://"),
        (
            4,
            "webhooks[0].events[1]",
            "\"uploaded\" is not one of upload",
        ),
        (5, "webhooks[0].paths[0]", "unclosed"),
        (5, "webhooks[0].paths[1]", "starts with /"),
        (6, "webhooks[0].colour", "unknown key"),
        (9, "webhooks[1].name", "duplicate webhook name"),
        (11, "webhooks[1].secret", "NOT_SET_ANYWHERE is not set"),
    ];
    assert_problems(&problems, &expect);
}

#[test]
fn a_webhook_shows_no_secret_and_no_url_credentials() {
    let text = "[[webhooks]]\nname = \"erp\"\nurl = \"https://user:pw@erp.example/hooks?token=t\"\nsecret = \"s3cr3t\"\n";
    let config = parse(text).unwrap();
    let shown = format!("{:?}", config.webhooks[0]);
    assert!(shown.contains("https://erp.example/hooks"), "{shown}");
    for secret in ["s3cr3t", "pw", "token"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert_eq!(
        config.webhooks[0].events,
        [crate::config::EventKind::Upload]
    );
}

#[test]
fn admin_problems_name_their_key_and_line() {
    let text = r#"[admin]
listen = "127.0.0.1:9100"
tls_cert = "/nonexistent/admin.pem"
protect_metrics = true

[[admin.users]]
name = "ops"
password = "plain"
role = "root"

[[admin.tokens]]
name = "bot"
hash = "0123"
"#;
    let problems = parse(text).unwrap_err();
    let expect = [
        (1, "admin.tls_cert", "tls_cert and tls_key go together"),
        (
            8,
            "admin.users[0].password",
            "plain-text passwords are not accepted",
        ),
        (
            9,
            "admin.users[0].role",
            "\"root\" is not one of admin, read-only",
        ),
        (13, "admin.tokens[0].hash", "is not a token hash"),
    ];
    assert_problems(&problems, &expect);
    let alone = parse("[admin]\nprotect_metrics = true\n").unwrap_err();
    assert_eq!(alone[0].key, "admin.protect_metrics", "{alone:#?}");
}

#[test]
fn cluster_problems_name_their_key_and_line_and_the_url_stays_secret() {
    let text = "[cluster]\nnode = \"gw 1\"\nheartbeat = \"2m\"\nmax_connections = 1\n";
    let problems = parse(text).unwrap_err();
    assert_problems(
        &problems,
        &[
            (1, "cluster.database", "is required"),
            (2, "cluster.node", "letters, digits"),
            (3, "cluster.heartbeat", "from 1s to 60s"),
            (4, "cluster.max_connections", "out of range"),
        ],
    );
    let text = "[cluster]\ndatabase = \"mysql://u:hunter2@db/x\"\n";
    let problems = parse(text).unwrap_err();
    assert_problems(&problems, &[(2, "cluster.database", "postgres:// URL")]);
    let text = "[cluster]\ndatabase = \"postgres://u:hunter2@db:notaport/x\"\n";
    let problems = parse(text).unwrap_err();
    assert_problems(
        &problems,
        &[(2, "cluster.database", "is not a PostgreSQL URL")],
    );
    assert!(!format!("{problems:?}").contains("hunter2"));

    let text = "[cluster]\ndatabase = \"postgres://u:hunter2@db/x?sslmode=require\"\n";
    let config = parse(text).unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(
        (cluster.heartbeat, cluster.max_connections),
        (Duration::from_secs(5), 8)
    );
    assert!(!cluster.node.is_empty());
    assert!(!format!("{cluster:?}").contains("hunter2"));
}

#[test]
fn filter_problems_name_their_key_and_line() {
    let text = format!(
        "[remotes.store]\nkind = \"memory\"\n[[users]]\nname = \"erin\"\npassword = \"{HASH}\"\nhome = \"store:/erin\"\n\
         [[users.filters]]\nallow = [\"*.csv\"]\n\
         [[users.filters]]\npath = \"/in\"\ndeny = [\"a/*.exe\"]\n\
         [[users.filters]]\npath = \"/out\"\n\
         [[users.filters]]\npath = \"/ok\"\ndeny = [\"*.js\"]\n\
         [[users.filters]]\npath = \"/ok/\"\ndeny = [\"*.exe\"]\n"
    );
    let problems = parse(&text).unwrap_err();
    assert_problems(
        &problems,
        &[
            (7, "users[0].filters[0].path", "is required"),
            (9, "users[0].filters[1].allow", "without '/'"),
            (12, "users[0].filters[2].allow", "needs allow or deny"),
            (17, "users[0].filters[4].path", "/ok has a filter already"),
        ],
    );
    let ok = format!(
        "[remotes.store]\nkind = \"memory\"\n[[users]]\nname = \"erin\"\npassword = \"{HASH}\"\nhome = \"store:/erin\"\n\
         [[users.filters]]\npath = \"/\"\ndeny = [\"*.EXE\"]\n\
         [[users.filters]]\npath = \"/in/deep/\"\nallow = [\"*.csv\"]\n\
         [[users.filters]]\npath = \"in\"\nallow = [\"*.xml\"]\n"
    );
    let config = parse(&ok).unwrap();
    let paths: Vec<&str> = config.users[0]
        .filters
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(paths, ["/in/deep", "/in", "/"], "deepest first");
}

#[test]
fn limit_problems_name_their_key_and_line() {
    let user = |name: &str, extra: &str| {
        format!(
            "[[users]]\nname = \"{name}\"\npassword = \"{HASH}\"\nhome = \"store:/{name}\"\n{extra}"
        )
    };
    let text = format!(
        "[remotes.store]\nkind = \"memory\"\n[server]\nbandwidth_up = \"fast\"\n{}{}{}",
        user("a", "quota = \"lots\"\nbandwidth_down = \"2MiB\"\n"),
        user(
            "b",
            "[[users.mounts]]\npath = \"/t\"\ntarget = \"store:/team\"\nquota = \"1MiB\"\n"
        ),
        user(
            "c",
            "[[users.mounts]]\npath = \"/t\"\ntarget = \"store:/team\"\nquota = \"2MiB\"\n"
        ),
    );
    let problems = parse(&text).unwrap_err();
    assert_problems(
        &problems,
        &[
            (4, "server.bandwidth_up", "not a rate like \"10MiB/s\""),
            (9, "users[0].quota", "not a size"),
            (10, "users[0].bandwidth_down", "not a rate"),
            (19, "users.c", "store:/team has another quota at user b"),
        ],
    );
    let ok = format!(
        "[remotes.store]\nkind = \"memory\"\n{}",
        user(
            "a",
            "quota = \"10GiB\"\nquota_files = 5\nbandwidth_up = \"1MiB/s\"\n"
        )
    );
    let limits = parse(&ok).unwrap().users[0].limits;
    assert_eq!(limits.quota.bytes, Some(10 << 30));
    assert_eq!(limits.quota.files, Some(5));
    assert_eq!(limits.bandwidth.up, Some(1 << 20));
}

mod auth;
