//! Who runs a command and from where: the user, and the client address,
//! user agent and means of sign-in the API layer saw. Every command takes
//! an [`Actor`] so that its audit event can say all of it.

use cuttle_model::{Permission, Permissions, Scope, User};
use std::ops::Deref;
use std::sync::Arc;

/// Where a request came from, as the HTTP layer saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    /// `API key`, `Session cookie`, `Username and password`; `None` for the
    /// server's own work (automatic deployments, health checks).
    pub established_with: Option<String>,
}

/// The most of a user agent kept: a client may send any length.
const USER_AGENT_MAX: usize = 400;

impl Origin {
    /// A request's origin from what the HTTP layer read: the peer address
    /// and the `User-Agent` header (cut short, without control characters).
    pub fn of_request(
        peer: Option<std::net::IpAddr>,
        user_agent: Option<&str>,
        established_with: Option<&str>,
    ) -> Self {
        Origin {
            ip_address: peer.map(|ip| ip.to_canonical().to_string()),
            user_agent: user_agent
                .map(|ua| {
                    ua.chars()
                        .filter(|c| !c.is_control())
                        .take(USER_AGENT_MAX)
                        .collect::<String>()
                })
                .filter(|ua| !ua.is_empty()),
            established_with: established_with.map(str::to_owned),
        }
    }
}

/// The caller of a command. Reads as its [`User`].
#[derive(Clone, Debug)]
pub struct Actor {
    pub user: User,
    pub origin: Origin,
    /// What the caller may do, as the API or portal computed it for this
    /// request; `None` for the server's own work (automatic deployments,
    /// scheduled checks), which commands do not check.
    pub permissions: Option<Arc<Permissions>>,
}

impl Actor {
    pub fn new(user: User, origin: Origin) -> Self {
        Actor {
            user,
            origin,
            permissions: None,
        }
    }

    /// This caller, held to `permissions`.
    pub fn with_permissions(mut self, permissions: Arc<Permissions>) -> Self {
        self.permissions = Some(permissions);
        self
    }

    /// Whether the caller may do `p` at `scope` (the server's own work may).
    pub fn may(&self, p: Permission, scope: &Scope) -> bool {
        self.permissions.as_ref().is_none_or(|x| x.allows(p, scope))
    }

    /// Allowed, or the 403 naming the permission and scope.
    pub fn require(&self, p: Permission, scope: &Scope) -> crate::Result<()> {
        if self.may(p, scope) {
            Ok(())
        } else {
            Err(crate::permissions::missing(p, scope))
        }
    }
}

/// The server acting on its own (automatic deployments, scheduled health
/// checks, retention): no address, no sign-in.
impl From<User> for Actor {
    fn from(user: User) -> Self {
        Actor {
            user,
            origin: Origin::default(),
            permissions: None,
        }
    }
}

impl Deref for Actor {
    type Target = User;

    fn deref(&self) -> &User {
        &self.user
    }
}

/// How a request's caller was identified.
pub mod established_with {
    pub const API_KEY: &str = "API key";
    pub const SESSION: &str = "Session cookie";
    pub const PASSWORD: &str = "Username and password";
}
