//! The FTP and FTPS frontend driven by suppaftp over TCP, plain and over
//! TLS, in front of S3 on loopback (moto_server). Each test asserts what a
//! user of an FTP client would see: bytes, listings, reply codes.

use crate::common;

use common::ftp::*;
use common::gateway::*;
use common::pattern;
use suppaftp::FtpError;
use suppaftp::tokio::AsyncFtpStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1 << 20;

/// The reply a command failed with.
fn reply_of(e: FtpError) -> (u32, String) {
    match e {
        FtpError::UnexpectedResponse(r) => {
            // The code from the text: suppaftp knows no 534, for one.
            let text = String::from_utf8_lossy(&r.body);
            let code = text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            (code, text.get(4..).unwrap_or("").trim().to_string())
        }
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// RETR of `name`, whole.
macro_rules! get {
    ($ftp:expr, $name:expr) => {{
        let mut stream = $ftp.retr_as_stream($name).await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        stream.finish().await.unwrap();
        got
    }};
}

/// The keys under `prefix` in the bucket, and how many multipart uploads are open.
fn bucket_state(g: &TestGateway, prefix: &str) -> String {
    g.s3(&format!(
        "r = s3.list_objects_v2(Bucket=bucket, Prefix='{prefix}')\n\
         keys = sorted((o['Key'], o['Size']) for o in r.get('Contents', []))\n\
         ups = s3.list_multipart_uploads(Bucket=bucket).get('Uploads', [])\n\
         print(keys, len(ups))"
    ))
    .trim()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_download_keep_every_byte_plain_and_tls() {
    client(async {
        let g = start("").await;
        let data = pattern(24 * MIB + 12345, 1);
        let mut plain = ftp_plain(&g, "alice").await;
        assert_eq!(
            plain.put_file("big.bin", &mut &data[..]).await.unwrap(),
            data.len() as u64
        );
        assert_eq!(plain.size("big.bin").await.unwrap(), data.len());
        assert!(get!(plain, "big.bin") == data, "plain download differs");

        let connector = Connector::new(client_config(&g));
        let mut tls = ftp_tls_with(&g, "alice", connector.clone()).await;
        assert!(get!(tls, "big.bin") == data, "TLS download differs");
        let small = pattern(1000, 2);
        tls.put_file("small.bin", &mut &small[..]).await.unwrap();
        assert_eq!(get!(tls, "small.bin"), small);
        assert_eq!(
            bucket_state(&g, "alice/"),
            format!(
                "[('alice/', 0), ('alice/big.bin', {}), ('alice/small.bin', 1000)] 0",
                data.len()
            )
        );
        // The control connection's session is resumed by every data connection.
        let handshakes = connector.handshakes();
        assert_eq!(handshakes.len(), 4, "{handshakes:?}");
        assert_eq!(handshakes[0].0, rustls::HandshakeKind::Full);
        assert_eq!(handshakes[0].1, rustls::ProtocolVersion::TLSv1_3);
        assert!(
            handshakes[1..]
                .iter()
                .all(|h| h.0 == rustls::HandshakeKind::Resumed),
            "{handshakes:?}"
        );
        plain.quit().await.unwrap();
        tls.quit().await.unwrap();
        g.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_clients_resume_too() {
    client(async {
        let g = start("").await;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(g.cert.clone()))
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = Connector::new(std::sync::Arc::new(config));
        let mut ftp = ftp_tls_with(&g, "bob", connector.clone()).await;
        ftp.put_file("a.txt", &mut &b"twelve bytes"[..])
            .await
            .unwrap();
        assert_eq!(get!(ftp, "a.txt"), b"twelve bytes");
        let handshakes = connector.handshakes();
        assert_eq!(
            handshakes[0],
            (
                rustls::HandshakeKind::Full,
                rustls::ProtocolVersion::TLSv1_2
            )
        );
        assert!(
            handshakes[1..]
                .iter()
                .all(|h| h.0 == rustls::HandshakeKind::Resumed),
            "{handshakes:?}"
        );
        g.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlsd_and_mlst_give_type_size_and_time() {
    let g = start("").await;
    let mut ftp = ftp_plain(&g, "alice").await;
    ftp.mkdir("docs").await.unwrap();
    ftp.put_file("docs/report.csv", &mut &pattern(1000, 3)[..])
        .await
        .unwrap();
    ftp.mkdir("docs/empty").await.unwrap();
    let mut lines = ftp.mlsd(Some("docs")).await.unwrap();
    lines.sort();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let now = chrono::Utc::now().format("%Y%m%d").to_string();
    assert!(lines[0].starts_with("type=dir;size=0;modify="), "{lines:?}");
    assert!(lines[0].ends_with("; empty"), "{lines:?}");
    assert!(
        lines[1].starts_with(&format!("type=file;size=1000;modify={now}")),
        "{lines:?}"
    );
    assert!(lines[1].ends_with("; report.csv"), "{lines:?}");
    let mlst = ftp.mlst(Some("docs/report.csv")).await.unwrap();
    assert!(mlst.contains("type=file;size=1000;modify="), "{mlst}");
    // LIST is `ls -l`, as FileZilla parses it.
    let list = ftp.list(Some("docs")).await.unwrap();
    assert!(
        list.iter().any(|l| l.starts_with("-rw-r--r--")
            && l.ends_with(" report.csv")
            && l.contains(" 1000 ")),
        "{list:?}"
    );
    let mut names = ftp.nlst(Some("docs")).await.unwrap();
    names.sort();
    assert_eq!(names, ["empty", "report.csv"]);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_resumes_a_download_from_its_offset() {
    let g = start("").await;
    let data = pattern(9 * MIB + 7, 4);
    let mut ftp = ftp_plain(&g, "alice").await;
    ftp.put_file("movie.bin", &mut &data[..]).await.unwrap();
    for offset in [1, 5 * MIB + 3, data.len()] {
        ftp.resume_transfer(offset).await.unwrap();
        let got = get!(ftp, "movie.bin");
        assert!(got == data[offset..], "from {offset}: {} bytes", got.len());
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_rename_whole_and_refuse_rmd_while_full() {
    let g = start("").await;
    let mut ftp = ftp_plain(&g, "alice").await;
    ftp.mkdir("inbox").await.unwrap();
    ftp.mkdir("inbox/sub").await.unwrap();
    ftp.put_file("inbox/a.txt", &mut &b"a"[..]).await.unwrap();
    ftp.put_file("inbox/sub/b.txt", &mut &b"bb"[..])
        .await
        .unwrap();
    let (code, text) = reply_of(ftp.rmdir("inbox").await.unwrap_err());
    assert_eq!((code, text.as_str()), (550, "directory not empty"));
    ftp.rename("inbox", "done").await.unwrap();
    assert_eq!(get!(ftp, "done/sub/b.txt"), b"bb");
    assert_eq!(
        bucket_state(&g, "alice/"),
        "[('alice/', 0), ('alice/done/', 0), ('alice/done/a.txt', 1), ('alice/done/sub/', 0), ('alice/done/sub/b.txt', 2)] 0"
    );
    ftp.rm("done/sub/b.txt").await.unwrap();
    ftp.rmdir("done/sub").await.unwrap();
    ftp.rename("done/a.txt", "a.txt").await.unwrap();
    assert_eq!(
        bucket_state(&g, "alice/"),
        "[('alice/', 0), ('alice/a.txt', 1), ('alice/done/', 0)] 0"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_stor_and_appe_resume_an_upload() {
    let g = start("").await;
    let data = pattern(14 * MIB + 99, 5);
    let mut ftp = ftp_plain(&g, "alice").await;
    let cut = 6 * MIB + 1;
    // REST + STOR (FileZilla, WinSCP, curl -C -): the old bytes are copied in S3.
    ftp.put_file("r.bin", &mut &data[..cut]).await.unwrap();
    ftp.resume_transfer(cut).await.unwrap();
    ftp.put_file("r.bin", &mut &data[cut..]).await.unwrap();
    assert!(get!(ftp, "r.bin") == data);
    // APPE (lftp, curl --append), with a small head streamed through.
    ftp.put_file("a.bin", &mut &data[..1000]).await.unwrap();
    ftp.append_file("a.bin", &mut &data[1000..]).await.unwrap();
    assert!(get!(ftp, "a.bin") == data);
    // APPE of a file that is not there creates it.
    ftp.append_file("new.bin", &mut &data[..10]).await.unwrap();
    assert_eq!(get!(ftp, "new.bin"), &data[..10]);
    // A REST past the end is refused and changes nothing.
    ftp.resume_transfer(data.len() + 5).await.unwrap();
    let err = ftp.put_file("a.bin", &mut &b"x"[..]).await.unwrap_err();
    assert!(reply_of(err).0 >= 500);
    assert_eq!(ftp.size("a.bin").await.unwrap(), data.len());
    assert_eq!(
        bucket_state(&g, "alice/"),
        format!(
            "[('alice/', 0), ('alice/a.bin', {n}), ('alice/new.bin', 10), ('alice/r.bin', {n})] 0",
            n = data.len()
        )
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_upload_leaves_no_object() {
    client(async {
        let g = start("").await;
        let data = pattern(12 * MIB, 6);
        // Plain: ABOR, then the data connection closes (suppaftp's abort).
        let mut ftp = ftp_plain(&g, "alice").await;
        let mut stream = ftp.put_with_stream("plain.bin").await.unwrap();
        stream.write_all(&data).await.unwrap();
        stream.flush().await.unwrap();
        g.wait_for_multipart("alice/plain.bin").await;
        ftp.abort(stream).await.unwrap();
        ftp.noop().await.unwrap();
        // TLS: the data connection dropped without close_notify.
        let mut tls = ftp_tls(&g, "alice").await;
        let mut stream = tls.put_with_stream("tls.bin").await.unwrap();
        stream.write_all(&data).await.unwrap();
        stream.flush().await.unwrap();
        g.wait_for_multipart("alice/tls.bin").await;
        // The dropped connection and the ABOR race: the upload fails either by
        // the ABOR or by the missing close_notify (451 for STOR, then 226).
        let _ = tls.abort(stream).await;
        drop(tls);
        // The client dying: its control connection closes, then its data one.
        let mut raw = RawFtp::login(&g, "alice").await;
        let (_, mut data_conn) = raw.pasv().await;
        assert!(raw.cmd("STOR gone.bin").await.starts_with("150"));
        data_conn.write_all(&data).await.unwrap();
        g.wait_for_multipart("alice/gone.bin").await;
        drop(raw.into_control());
        drop(data_conn);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let state = bucket_state(&g, "");
            if state.ends_with(" 0") || std::time::Instant::now() > deadline {
                assert_eq!(state, "[('alice/', 0)] 0");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        g.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_checked() {
    client(async {
        let g = start("").await;
        // Wrong password, unknown user, address not allowed: 530, after the failure delay.
        for (user, pass) in [("alice", "wrong"), ("nobody", PASSWORD), ("dave", PASSWORD)] {
            let mut ftp = AsyncFtpStream::connect(g.ftp).await.unwrap();
            let (code, _) = reply_of(ftp.login(user, pass).await.unwrap_err());
            assert_eq!(code, 530, "{user}");
        }
        // carol has max_sessions = 1, shared with SFTP.
        let first = ftp_plain(&g, "carol").await;
        let mut second = AsyncFtpStream::connect(g.ftp).await.unwrap();
        assert_eq!(
            reply_of(second.login("carol", PASSWORD).await.unwrap_err()).0,
            530
        );
        drop(first);
        g.stop().await;

        let g = start_ftp("tls_required = true").await;
        // tls_required: USER before AUTH TLS is refused.
        let mut ftp = AsyncFtpStream::connect(g.ftp).await.unwrap();
        let (code, text) = reply_of(ftp.login("alice", PASSWORD).await.unwrap_err());
        assert_eq!(code, 534, "{text}");
        // With TLS, wrong password still fails and the right one works.
        let tls = suppaftp::tokio::AsyncRustlsFtpStream::connect(g.ftp)
            .await
            .unwrap();
        let mut tls = tls
            .into_secure(Connector::new(client_config(&g)), "localhost")
            .await
            .unwrap();
        let (code, _) = reply_of(tls.login("alice", "wrong").await.unwrap_err());
        assert_eq!(code, 530);
        let mut tls = ftp_tls(&g, "alice").await;
        assert_eq!(tls.pwd().await.unwrap(), "/");
        // Data in clear text is refused however the client opens it.
        tls.custom_command("PROT C", &[suppaftp::Status::CommandOk])
            .await
            .unwrap();
        for open in ["PASV", "EPSV"] {
            let (code, _) = reply_of(
                tls.custom_command(open, &[suppaftp::Status::PassiveMode])
                    .await
                    .unwrap_err(),
            );
            assert_eq!(code, 534, "{open}");
        }
        tls.custom_command("PROT P", &[suppaftp::Status::CommandOk])
            .await
            .unwrap();
        assert_eq!(
            tls.list(None).await.unwrap().len(),
            1,
            "the read-only mount /shared"
        );
        g.stop().await;
    })
    .await;
}

/// What clients do that a server must get right, from their sources:
/// lftp asks FEAT first, curl walks folders one CWD at a time, FileZilla
/// uses PASV on IPv4, WinSCP sends MDTM with two arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_habits_are_answered() {
    let g = start("").await;
    g.s3(
        "s3.put_object(Bucket=bucket, Key='alice/deep/er/x.txt', Body=b'x')\n\
          s3.put_object(Bucket=bucket, Key='alice/marked/only/', Body=b'')",
    );
    let mut ftp = RawFtp::connect(&g).await;
    let feat = ftp.cmd("FEAT").await;
    for f in [
        "UTF8",
        "MLST",
        "SIZE",
        "MDTM",
        "REST STREAM",
        "EPSV",
        "AUTH TLS",
        "MFMT",
    ] {
        assert!(
            feat.lines()
                .any(|l| l.trim() == f || l.trim().starts_with(&format!("{f} "))),
            "{f} missing: {feat}"
        );
    }
    assert!(ftp.cmd("OPTS UTF8 ON").await.starts_with("200"));
    assert!(ftp.cmd("USER alice").await.starts_with("331"));
    assert!(
        ftp.cmd(&format!("PASS {PASSWORD}"))
            .await
            .starts_with("230")
    );
    assert!(ftp.cmd("SYST").await.starts_with("215"));
    // curl: one level at a time, through prefixes and marker-only folders.
    for dir in ["deep", "er"] {
        assert!(
            ftp.cmd(&format!("CWD {dir}")).await.starts_with("250"),
            "{dir}"
        );
    }
    assert_eq!(ftp.cmd("PWD").await.trim(), "257 \"/deep/er\"");
    assert!(ftp.cmd("SIZE x.txt").await.starts_with("213 1"));
    assert!(ftp.cmd("CDUP").await.starts_with("250"));
    assert!(ftp.cmd("CWD ..").await.starts_with("250"));
    assert_eq!(ftp.cmd("PWD").await.trim(), "257 \"/\"");
    for dir in ["marked", "only"] {
        assert!(
            ftp.cmd(&format!("CWD {dir}")).await.starts_with("250"),
            "{dir}"
        );
    }
    assert!(ftp.cmd("CWD /nowhere").await.starts_with("550"));
    assert!(ftp.cmd("CWD /deep/er/x.txt").await.starts_with("550"));
    assert!(ftp.cmd("CWD /").await.starts_with("250"));
    // SIZE of a missing file: 550.
    assert!(ftp.cmd("SIZE missing.txt").await.starts_with("550"));
    assert!(ftp.cmd("MDTM deep/er/x.txt").await.starts_with("213 20"));
    // WinSCP's MDTM <time> <path> is not a file name.
    let reply = ftp.cmd("MDTM 20200102030405 deep/er/x.txt").await;
    assert!(reply.starts_with('5'), "{reply}");
    // A malformed command gets its 501 and the session goes on.
    assert!(ftp.cmd("REST abc").await.starts_with("501"));
    // MFMT: accepted; the time is kept only with preserve_mtime.
    let reply = ftp.cmd("MFMT 20200102030405 deep/er/x.txt").await;
    assert!(
        reply.starts_with("213 Modify=20200102030405; deep/er/x.txt"),
        "{reply}"
    );
    assert!(
        ftp.cmd("MFMT 20200102030405 missing.txt")
            .await
            .starts_with("550")
    );
    assert!(
        ftp.cmd("MFMT yesterday deep/er/x.txt")
            .await
            .starts_with("501")
    );
    // lftp mirror -R: SITE CHMOD is answered, not fatal.
    let reply = ftp.cmd("SITE CHMOD 644 deep/er/x.txt").await;
    assert!(reply.starts_with('2') || reply.starts_with('5'), "{reply}");
    // FileZilla: PASV names an address it can reach.
    let (addr, _data) = ftp.pasv().await;
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert!((20000..=29999).contains(&addr.port()), "{addr}");
    assert!(ftp.cmd("ABOR").await.starts_with("226"));
    assert!(ftp.cmd("NOOP").await.starts_with("200"));
    assert!(ftp.cmd("QUIT").await.starts_with("221"));
    g.stop().await;
}

/// Implicit FTPS: TLS from the first byte, on its own port, data protected
/// without PBSZ/PROT; the explicit port is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_ftps_serves_files() {
    client(async {
        let g = start_ftp("implicit_listen = \"127.0.0.1:0\"\ntls_required = true").await;
        let addr = g.ftps_implicit.expect("implicit listener");
        let connector = Connector::new(client_config(&g));
        let mut ftp = suppaftp::tokio::AsyncRustlsFtpStream::connect_secure_implicit(
            addr,
            connector.clone(),
            "localhost",
        )
        .await
        .unwrap();
        ftp.login("alice", PASSWORD).await.unwrap();
        ftp.transfer_type(suppaftp::types::FileType::Binary)
            .await
            .unwrap();
        let data = pattern(3 * MIB + 5, 8);
        ftp.put_file("i.bin", &mut &data[..]).await.unwrap();
        assert!(get!(ftp, "i.bin") == data);
        // Control and both data connections were TLS.
        assert_eq!(
            connector.handshakes().len(),
            3,
            "{:?}",
            connector.handshakes()
        );
        // A plain client on the implicit port gets no greeting in clear text.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain.write_all(b"USER alice\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = plain.read(&mut buf).await.unwrap_or(0);
        assert!(
            !buf[..n].starts_with(b"220"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        g.stop().await;
    })
    .await;
}

/// A gateway behind NAT announces the address it is told to in PASV; EPSV
/// names only the port, so it works unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_host_is_announced_as_given() {
    let g = start_ftp("passive_host = \"192.0.2.7\"").await;
    let mut ftp = RawFtp::login(&g, "alice").await;
    let addr = ftp.pasv_addr().await;
    assert_eq!(addr.ip().to_string(), "192.0.2.7");
    assert!((20000..=29999).contains(&addr.port()), "{addr}");
    let epsv = ftp.cmd("EPSV").await;
    assert!(epsv.starts_with("229") && epsv.contains("(|||"), "{epsv}");
    g.stop().await;
}
