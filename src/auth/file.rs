//! The users of gateway.toml: a password hash or authorized keys each.

use super::cache::Credential;
use super::check_password;
use super::login::{Answer, LoginError};
use crate::config::UserConfig;
use std::collections::HashMap;
use std::sync::Arc;

pub struct FileUsers(HashMap<String, Arc<UserConfig>>);

impl FileUsers {
    pub fn new(users: &[UserConfig]) -> Self {
        FileUsers(
            users
                .iter()
                .map(|u| (u.name.clone(), Arc::new(u.clone())))
                .collect(),
        )
    }

    /// Every user, by name.
    pub fn all(&self) -> Vec<Arc<UserConfig>> {
        let mut users: Vec<_> = self.0.values().cloned().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    /// Checks a password off the async threads (hashes are slow on
    /// purpose); a key by its data, comments and options aside.
    pub async fn check(&self, name: &str, credential: &Credential<'_>) -> Answer {
        let Some(user) = self.0.get(name).cloned() else {
            return Answer::Unknown;
        };
        let checked = match credential {
            Credential::Password(password) => match user.password_hash.clone() {
                None => Err(LoginError::NoPassword),
                Some(hash) => match check_password(hash, password.to_string()).await {
                    true => Ok(user),
                    false => Err(LoginError::WrongPassword),
                },
            },
            Credential::Key(key) => match user
                .authorized_keys
                .iter()
                .any(|k| k.key_data() == key.key_data())
            {
                true => Ok(user),
                false => Err(LoginError::UnknownKey),
            },
            // Its principals are checked for every source (`Sources::check`).
            Credential::Certificate(_) => Ok(user),
        };
        Answer::Decided(checked)
    }
}
