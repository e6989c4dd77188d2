//! A user's second factor: a TOTP secret (RFC 6238) and the sequences of
//! login methods that must succeed, in OpenSSH's `AuthenticationMethods`
//! syntax (`["publickey,keyboard-interactive"]`). The TOTP code is what
//! SSH's keyboard-interactive asks for, what FTP appends to the password
//! and what the web client asks after it.

/// A way of proving who one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Password,
    /// A key or a certificate.
    PublicKey,
    /// The TOTP code.
    KeyboardInteractive,
}

impl Method {
    fn parse(name: &str) -> Option<Method> {
        match name {
            "password" => Some(Method::Password),
            "publickey" => Some(Method::PublicKey),
            "keyboard-interactive" => Some(Method::KeyboardInteractive),
            _ => None,
        }
    }
}

/// A TOTP secret: never shown, not even in a debug print.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(pub Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(…)")
    }
}

impl TotpSecret {
    /// A secret as authenticator apps take it: base32, any case, spaces
    /// and padding allowed; at least 80 bits, as RFC 4226 asks.
    pub fn parse(text: &str) -> Result<TotpSecret, String> {
        let clean: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = data_encoding::BASE32_NOPAD
            .decode(clean.as_bytes())
            .map_err(|_| "is not a base32 secret".to_string())?;
        if bytes.len() < 10 {
            return Err("is shorter than 80 bits (16 base32 characters)".into());
        }
        Ok(TotpSecret(bytes))
    }
}

/// Where a login stands against a user's `auth_methods`.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// A sequence is complete: the user is in.
    Done,
    /// Good so far: one of these must follow.
    Next(Vec<Method>),
    /// No sequence begins so.
    Refused,
}

/// The sequences of methods, any of which logs the user in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMethods(pub Vec<Vec<Method>>);

impl AuthMethods {
    /// What a user gets without `auth_methods`: any one method, or with a
    /// TOTP secret, a password or a key and then the code.
    pub fn default_for(totp: bool) -> AuthMethods {
        use Method::*;
        AuthMethods(match totp {
            false => vec![vec![Password], vec![PublicKey]],
            true => vec![
                vec![Password, KeyboardInteractive],
                vec![PublicKey, KeyboardInteractive],
            ],
        })
    }

    /// `auth_methods` as written; `totp`: whether the user has a secret,
    /// which keyboard-interactive asks for.
    pub fn parse(lists: &[String], totp: bool) -> Result<AuthMethods, String> {
        let mut all = Vec::new();
        for list in lists {
            let mut seq = Vec::new();
            for name in list.split(',').map(str::trim) {
                let method = Method::parse(name).ok_or_else(|| {
                    format!("{name:?} is not password, publickey or keyboard-interactive")
                })?;
                seq.push(method);
            }
            match seq.first() {
                None => return Err("an empty sequence".into()),
                Some(Method::KeyboardInteractive) => {
                    return Err(format!(
                        "{list:?}: keyboard-interactive asks only the TOTP code, so it cannot come first"
                    ));
                }
                Some(_) => {}
            }
            if seq.contains(&Method::KeyboardInteractive) && !totp {
                return Err(format!(
                    "{list:?}: keyboard-interactive needs the user's totp"
                ));
            }
            all.push(seq);
        }
        if all.is_empty() {
            return Err("lists no way to log in".into());
        }
        Ok(AuthMethods(all))
    }

    /// Where `done`, the methods that succeeded in order, stands.
    pub fn progress(&self, done: &[Method]) -> Progress {
        let mut next = Vec::new();
        for seq in &self.0 {
            if seq.as_slice() == done {
                return Progress::Done;
            }
            if seq.starts_with(done)
                && let Some(m) = seq.get(done.len())
                && !next.contains(m)
            {
                next.push(*m);
            }
        }
        match next.is_empty() {
            true => Progress::Refused,
            false => Progress::Next(next),
        }
    }

    /// Whether a login by `method` needs a TOTP code after it.
    pub fn code_after(&self, method: Method) -> bool {
        matches!(self.progress(&[method]), Progress::Next(n) if n.contains(&Method::KeyboardInteractive))
    }
}

#[cfg(test)]
mod tests {
    use super::Method::*;
    use super::*;

    #[test]
    fn sequences_as_openssh_reads_them() {
        let m = AuthMethods::parse(
            &["publickey,keyboard-interactive".into(), "password".into()],
            true,
        )
        .unwrap();
        assert_eq!(
            m.progress(&[PublicKey]),
            Progress::Next(vec![KeyboardInteractive])
        );
        assert_eq!(
            m.progress(&[PublicKey, KeyboardInteractive]),
            Progress::Done
        );
        assert_eq!(m.progress(&[Password]), Progress::Done);
        assert_eq!(m.progress(&[KeyboardInteractive]), Progress::Refused);
        assert!(m.code_after(PublicKey) && !m.code_after(Password));
        for (lists, totp) in [
            (vec!["keyboard-interactive"], true),
            (vec!["password,keyboard-interactive"], false),
            (vec!["password,otp"], true),
            (vec![], true),
        ] {
            let lists: Vec<String> = lists.into_iter().map(String::from).collect();
            assert!(AuthMethods::parse(&lists, totp).is_err(), "{lists:?}");
        }
        assert_eq!(
            AuthMethods::default_for(true).progress(&[Password]),
            Progress::Next(vec![KeyboardInteractive])
        );
    }

    #[test]
    fn secrets_are_base32_as_apps_show_them() {
        let s = TotpSecret::parse("jbsw y3dp ehpk 3pxp").unwrap();
        assert_eq!(s.0, b"Hello!\xde\xad\xbe\xef");
        assert!(TotpSecret::parse("JBSWY3DP").is_err());
        assert!(TotpSecret::parse("not base32!").is_err());
        assert_eq!(format!("{s:?}"), "TotpSecret(…)");
    }
}
