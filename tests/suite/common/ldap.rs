//! A real OpenLDAP server (Debian's `slapd`) on a loopback port, with its
//! own database in a temporary folder, loaded with the people and groups
//! a test gives. It speaks plain LDAP with StartTLS and LDAPS on a second
//! port, under a certificate made here for "localhost" and 127.0.0.1.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=com";
pub const SERVICE_DN: &str = "cn=gateway,dc=example,dc=com";
pub const SERVICE_PASSWORD: &str = "service-secret";

/// One person of `ou=people`.
pub struct Person<'a> {
    pub uid: &'a str,
    pub password: &'a str,
    /// Groups of `ou=groups` (by cn) the person is a member of.
    pub groups: &'a [&'a str],
    /// More attributes: `("departmentNumber", "sales")`, `("sshPublicKey", "ssh-ed25519 …")`.
    pub attrs: Vec<(&'a str, &'a str)>,
}

pub struct Slapd {
    child: Option<Child>,
    /// `ldap://127.0.0.1:PORT` (StartTLS offered).
    pub url: String,
    /// `ldaps://127.0.0.1:PORT`.
    pub ldaps_url: String,
    /// The server certificate (PEM), the CA a client trusts.
    pub ca_file: PathBuf,
    dir: tempfile::TempDir,
}

/// The schema of OpenSSH keys in LDAP (openssh-lpk), which Debian does not ship.
const LPK_SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.24552.500.1.1.1.13 NAME 'sshPublicKey'
  DESC 'OpenSSH public key' EQUALITY octetStringMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
objectclass ( 1.3.6.1.4.1.24552.500.1.1.2.0 NAME 'ldapPublicKey' SUP top AUXILIARY
  MAY ( sshPublicKey $ uid ) )
";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Slapd {
    pub fn start(people: &[Person<'_>]) -> Slapd {
        let slapd = ["/usr/sbin/slapd", "/usr/local/sbin/slapd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("slapd must be installed for the LDAP tests: apt-get install slapd (.ci/run does it)");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let tls = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let ca_file = dir.path().join("cert.pem");
        std::fs::write(&ca_file, tls.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), tls.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("lpk.schema"), LPK_SCHEMA).unwrap();
        let config = format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include {d}/lpk.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
TLSCertificateFile {d}/cert.pem
TLSCertificateKeyFile {d}/key.pem
database mdb
suffix \"{SUFFIX}\"
rootdn \"cn=admin,{SUFFIX}\"
rootpw admin-secret
directory {d}/db
maxsize 10485760
access to attrs=userPassword by self auth by anonymous auth by * none
access to * by users read by anonymous auth
"
        );
        std::fs::write(dir.path().join("slapd.conf"), config).unwrap();
        std::fs::write(dir.path().join("data.ldif"), ldif(people)).unwrap();
        let load = Command::new(slapd.replace("slapd", "slapadd"))
            .args([
                "-f",
                &format!("{d}/slapd.conf"),
                "-l",
                &format!("{d}/data.ldif"),
            ])
            .output()
            .unwrap();
        assert!(
            load.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&load.stderr)
        );
        let (port, ldaps_port) = (free_port(), free_port());
        let url = format!("ldap://127.0.0.1:{port}");
        let ldaps_url = format!("ldaps://127.0.0.1:{ldaps_port}");
        let log = std::fs::File::create(dir.path().join("slapd.log")).unwrap();
        let mut child = Command::new(slapd)
            .args([
                "-f",
                &format!("{d}/slapd.conf"),
                "-h",
                &format!("{url}/ {ldaps_url}/"),
                // Level 256 (stats): a line per connection and operation.
                "-d",
                "256",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        for p in [port, ldaps_port] {
            while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!(
                        "slapd exited ({status}): {}",
                        std::fs::read_to_string(dir.path().join("slapd.log")).unwrap_or_default()
                    );
                }
                assert!(Instant::now() < deadline, "slapd did not listen on {p}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Slapd {
            child: Some(child),
            url,
            ldaps_url,
            ca_file,
            dir,
        }
    }

    /// Stops the server (the directory is down from now on).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sets a person's password, as the directory's administrator.
    pub async fn set_password(&self, uid: &str, password: &str) {
        use ldap3::Mod;
        use std::collections::HashSet;
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&self.url).await.unwrap();
        tokio::spawn(async move { conn.drive().await });
        ldap.simple_bind(&format!("cn=admin,{SUFFIX}"), "admin-secret")
            .await
            .unwrap()
            .success()
            .unwrap();
        let dn = format!("uid={uid},ou=people,{SUFFIX}");
        let values: HashSet<&str> = [password].into();
        ldap.modify(&dn, vec![Mod::Replace("userPassword", values)])
            .await
            .unwrap()
            .success()
            .unwrap();
        let _ = ldap.unbind().await;
    }

    /// How many connections the server has accepted.
    pub fn connections(&self) -> usize {
        self.log().matches(" ACCEPT from ").count()
    }

    /// The filters of the searches the server was asked, in order.
    pub fn filters(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(" SRCH base="))
            .filter_map(|l| l.split(" filter=\"").nth(1))
            .map(|f| f.trim_end_matches('"').to_string())
            .collect()
    }

    /// The slapd stats log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ldif(people: &[Person<'_>]) -> String {
    let mut out = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: gateway\nuserPassword: {SERVICE_PASSWORD}\n\n"
    );
    let mut groups: Vec<&str> = people
        .iter()
        .flat_map(|p| p.groups.iter().copied())
        .collect();
    groups.sort();
    groups.dedup();
    for p in people {
        out.push_str(&format!(
            "dn: uid={0},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nobjectClass: ldapPublicKey\n\
             uid: {0}\ncn: {0}\nsn: {0}\nuserPassword: {1}\n",
            p.uid, p.password
        ));
        for (name, value) in &p.attrs {
            out.push_str(&format!("{name}: {value}\n"));
        }
        out.push('\n');
    }
    for g in groups {
        out.push_str(&format!(
            "dn: cn={g},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {g}\n"
        ));
        for p in people.iter().filter(|p| p.groups.contains(&g)) {
            out.push_str(&format!("member: uid={},ou=people,{SUFFIX}\n", p.uid));
        }
        out.push('\n');
    }
    out
}
