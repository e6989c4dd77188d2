//! What a user may do in their tree: the `permissions` list of gateway.toml.

use std::fmt;

/// One right from the `permissions` list; `"*"` grants them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Permission {
    List = 1 << 0,
    Download = 1 << 1,
    Upload = 1 << 2,
    Overwrite = 1 << 3,
    Delete = 1 << 4,
    Rename = 1 << 5,
    Mkdir = 1 << 6,
    Rmdir = 1 << 7,
    Setstat = 1 << 8,
    /// Create share links (the web client): not in `"*"`, which grants
    /// what SFTP and FTP can do, since a link hands files to people
    /// without an account.
    Share = 1 << 9,
}

impl Permission {
    pub const ALL: [Permission; 10] = [
        Permission::List,
        Permission::Download,
        Permission::Upload,
        Permission::Overwrite,
        Permission::Delete,
        Permission::Rename,
        Permission::Mkdir,
        Permission::Rmdir,
        Permission::Setstat,
        Permission::Share,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::List => "list",
            Permission::Download => "download",
            Permission::Upload => "upload",
            Permission::Overwrite => "overwrite",
            Permission::Delete => "delete",
            Permission::Rename => "rename",
            Permission::Mkdir => "mkdir",
            Permission::Rmdir => "rmdir",
            Permission::Setstat => "setstat",
            Permission::Share => "share",
        }
    }

    /// Rights that change the tree: refused on read-only mounts whatever the list says.
    pub fn writes(self) -> bool {
        !matches!(self, Permission::List | Permission::Download)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`Permission`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u16);

impl Permissions {
    /// What `"*"` grants: every right but [`Permission::Share`].
    pub fn all() -> Self {
        Permission::ALL
            .into_iter()
            .filter(|p| *p != Permission::Share)
            .collect()
    }

    pub fn allows(self, p: Permission) -> bool {
        self.0 & p as u16 != 0
    }

    /// Parses one entry of the config list: a permission name or `*`.
    pub fn parse_entry(entry: &str) -> Result<Permissions, String> {
        if entry == "*" {
            return Ok(Self::all());
        }
        Permission::ALL
            .into_iter()
            .find(|p| p.name() == entry)
            .map(|p| Permissions(p as u16))
            .ok_or_else(|| {
                format!(
                    "unknown permission {entry:?}; use \"*\" (all but share) or any of: {}",
                    Permission::ALL.map(Permission::name).join(" ")
                )
            })
    }

    /// The names of what is allowed, in the order of [`Permission::ALL`].
    pub fn names(self) -> Vec<&'static str> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.allows(*p))
            .map(Permission::name)
            .collect()
    }

    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        Permissions(iter.into_iter().fold(0, |acc, p| acc | p as u16))
    }
}
