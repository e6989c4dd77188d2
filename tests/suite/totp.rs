//! A second factor (RFC 6238 TOTP), with codes from `oathtool`: over SSH
//! the code is asked by keyboard-interactive after the first method
//! (paramiko), over FTP it follows the password (suppaftp), and the web
//! client takes it beside the password. A code is taken once; a missing
//! or wrong one refuses the login.

use crate::common;
use common::gateway::{HASH, PASSWORD, TestGateway, start_with_tables};
use russh::keys::{Algorithm, PrivateKey};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

fn code() -> String {
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", SECRET])
        .output()
        .expect("oathtool (apt-get install oathtool)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A code that is not the current one, nor one step either side.
fn wrong_code() -> String {
    let now = code().parse::<u32>().unwrap();
    format!("{:06}", (now + 500_000) % 1_000_000)
}

/// tina: a password and the code; kate: a key and the code, never a
/// password; frank (FTP) and wendy (web): a password and the code.
fn tables(kate_key: &str, ban_threshold: u32) -> String {
    let user = |name: &str, more: &str| {
        format!(
            "[[users]]\nname = \"{name}\"\npassword = \"{HASH}\"\nhome = \"store:/{name}\"\ntotp = \"{SECRET}\"\n{more}\n"
        )
    };
    format!(
        "[security]\nban_threshold = {ban_threshold}\n\n[web]\nlisten = \"127.0.0.1:0\"\n\n{}{}{}{}",
        user("tina", ""),
        user(
            "kate",
            &format!(
                "authorized_keys = [{kate_key:?}]\nauth_methods = [\"publickey,keyboard-interactive\"]"
            )
        ),
        user("frank", ""),
        user("wendy", ""),
    )
}

async fn gateway() -> (TestGateway, std::path::PathBuf) {
    gateway_banning_after(100).await
}

async fn gateway_banning_after(ban_threshold: u32) -> (TestGateway, std::path::PathBuf) {
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let public = key.public_key().to_openssh().unwrap();
    let g = start_with_tables(&tables(&public, ban_threshold)).await;
    let file = g.dir.path().join("kate_key");
    key.write_openssh_file(&file, russh::keys::ssh_key::LineEnding::LF)
        .unwrap();
    (g, file)
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_asks_the_code_after_the_first_method_and_takes_it_once() {
    let (g, kate_key) = gateway().await;
    let script = format!(
        r#"
import paramiko, sys
def attempt(user, password=None, key=None, answer=None):
    t = paramiko.Transport(("127.0.0.1", {port}))
    t.start_client()
    try:
        if key:
            rest = t.auth_publickey(user, paramiko.Ed25519Key.from_private_key_file(key))
        else:
            rest = t.auth_password(user, password)
        if t.is_authenticated():
            return "in"
        if answer is None:
            return "partial:" + ",".join(rest)
        t.auth_interactive(user, lambda title, instructions, prompts: [answer for _ in prompts])
        return "in" if t.is_authenticated() else "out"
    except paramiko.AuthenticationException:
        return "refused"
    finally:
        t.close()
for line in sys.stdin:
    user, how, answer = line.split()
    answer = None if answer == "-" else answer
    if how == "key":
        print(attempt(user, key="{key}", answer=answer), flush=True)
    else:
        print(attempt(user, password="{password}", answer=answer), flush=True)
"#,
        port = g.addr.port(),
        key = kate_key.display(),
        password = PASSWORD,
    );
    let right = code();
    let steps = [
        ("tina password -", "partial:keyboard-interactive"),
        (&*format!("tina password {}", wrong_code()), "refused"),
        (&*format!("tina password {right}"), "in"),
        (&*format!("tina password {right}"), "refused"),
        ("kate password -", "refused"),
        ("kate key -", "partial:keyboard-interactive"),
        (&*format!("kate key {}", code()), "in"),
    ];
    let input: String = steps.iter().map(|(line, _)| format!("{line}\n")).collect();
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let got: Vec<&str> = said.lines().collect();
    let wanted: Vec<&str> = steps.iter().map(|(_, w)| *w).collect();
    assert_eq!(got, wanted, "{}", String::from_utf8_lossy(&out.stderr));
    g.stop().await;
}

/// Logs frank in over FTP with the password and `code`: whether it worked.
async fn ftp_login(addr: std::net::SocketAddr, code: &str) -> bool {
    ftp_login_as(addr, "frank", code).await
}

async fn ftp_login_as(addr: std::net::SocketAddr, user: &str, code: &str) -> bool {
    let Ok(mut ftp) = suppaftp::tokio::AsyncFtpStream::connect(addr).await else {
        return false;
    };
    let done = ftp.login(user, &format!("{PASSWORD}{code}")).await;
    let _ = ftp.quit().await;
    done.is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_count_toward_the_ban() {
    let (g, _) = gateway_banning_after(3).await;
    for _ in 0..3 {
        assert!(!ftp_login(g.ftp, &wrong_code()).await);
    }
    assert!(
        !ftp_login(g.ftp, &code()).await,
        "banned after three wrong codes, even with the right one"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ftp_takes_the_code_after_the_password_and_the_web_beside_it() {
    let (g, _) = gateway().await;
    assert!(!ftp_login(g.ftp, "").await, "the password alone");
    assert!(!ftp_login(g.ftp, &wrong_code()).await, "a wrong code");
    let right = code();
    assert!(ftp_login(g.ftp, &right).await, "the password and the code");
    assert!(!ftp_login(g.ftp, &right).await, "the same code again");

    let http = reqwest::Client::new();
    let login = |code: Option<String>| {
        let http = http.clone();
        let url = format!("http://{}/api/login", g.web.unwrap());
        async move {
            let body = serde_json::json!({"user": "wendy", "password": PASSWORD, "code": code});
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, said) = login(None).await;
    assert_eq!(status, 401);
    assert!(said.contains("authenticator"), "{said}");
    assert_eq!(login(Some(wrong_code())).await.0, 401);
    assert_eq!(login(Some(code())).await.0, 200);
    g.stop().await;
}

/// The HTTP hook's user definition may give a TOTP secret: its user then
/// needs the code as a user of the config file does.
#[tokio::test(flavor = "multi_thread")]
async fn a_hook_user_needs_the_code_its_definition_asks_for() {
    let hook = common::receiver::Receiver::start().await;
    hook.answer_with(|q| match q["user"] == "hank" && q["password"] == PASSWORD {
        true => (
            200,
            serde_json::json!({"home": "store:/hank", "permissions": ["*"], "totp": SECRET})
                .to_string(),
        ),
        false => (403, String::new()),
    });
    let g = start_with_tables(&format!(
        "[security]\nban_threshold = 100\n\n[auth]\ncache_time = \"0\"\n\n[auth.http]\nurl = \"{}\"\nsecret = \"hook-secret\"\n",
        hook.url()
    ))
    .await;
    assert!(!ftp_login_as(g.ftp, "hank", "").await, "the password alone");
    assert!(
        !ftp_login_as(g.ftp, "hank", &wrong_code()).await,
        "a wrong code"
    );
    assert!(
        ftp_login_as(g.ftp, "hank", &code()).await,
        "the password and the code"
    );
    g.stop().await;
}
