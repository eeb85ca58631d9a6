//! The one authorization policy. Who may do what to which resource is
//! decided here and nowhere else; the use cases ask before they act.
//!
//! The rules are HIL's (`hil/api.py`): admins may do everything; a project's
//! members act on its nodes and networks; a free node belongs to the admins;
//! a network with no access list is public; a network's owner (a project, or
//! the admins for admin-owned ones) manages it. Background work (a reclaim's
//! BMC fallback, the networking-action worker) runs as [`Actor::Internal`],
//! never as a forged admin.

use std::collections::HashSet;

/// A refusal by the policy. The use cases turn it into their own error
/// (`app::Error`: 401, 403, or an internal error for a missing rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An anonymous caller where a user is required.
    #[error("authentication required")]
    Unauthenticated,
    /// The caller lacks the access; the text says which.
    #[error("{0}")]
    Forbidden(String),
    /// No rule covers this action on this resource (a programming error:
    /// refused, and logged as internal).
    #[error("no policy for {0}")]
    NoPolicy(String),
}

/// An authenticated (or anonymous) API caller.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// User name; `None` for anonymous requests.
    pub user: Option<String>,
    /// Admin users may do everything.
    pub admin: bool,
    /// Projects the user is a member of.
    pub projects: HashSet<String>,
}

/// Who acts.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// A caller of the API.
    Caller(&'a Caller),
    /// The control plane itself, doing work a caller was already authorized
    /// for (e.g. a reclaim power-cycling the node it reclaims); names the task.
    Internal(&'static str),
}

/// What is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Administer the installation: users, projects, switches, node
    /// registration, listings of everything.
    Administer,
    /// Use a project's resources: its nodes (power, console, networks),
    /// deployments and listings.
    UseProject,
    /// See a network (its channels and the attachments one may see).
    SeeNetwork,
    /// Manage a network as its owner: delete it, grant access.
    ManageNetwork,
    /// Revoke `project`'s access to a network.
    RevokeNetworkAccess(&'a str),
    /// List a network's attachments, all of them or those of one project.
    ListAttachments(Option<&'a str>),
    /// Use an SSH keypair (list it, put it in a deployment).
    UseKeypair,
    /// Share one's keypair with a project.
    ShareKeypair,
    /// See (and deploy) an image.
    SeeImage,
    /// Change or delete an image, share it with projects.
    ManageImage,
    /// Buy or bid on an offer for project `buyer` (its members; never the
    /// offer's owner: no wash trades; only an audience member if it has one).
    Buy(&'a str),
    /// Offer a project's nodes, withdraw its offers, settle its auctions.
    ManageOffer,
    /// See a lease (its owner's and its lessee's members).
    SeeLease,
    /// Cancel a scheduled lease (owner or lessee).
    CancelLease,
    /// Recall an interruptible lease (the owner).
    RecallLease,
    /// Extend a lease (the lessee).
    ExtendLease,
}

/// On what.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// The installation as a whole.
    System,
    /// A project; `None` stands for "no project": a free node is the admins'.
    Project(Option<&'a str>),
    /// A network: its owning project (`None`: the admins) and the projects
    /// with access (empty: public).
    Network {
        /// Owning project.
        owner: Option<&'a str>,
        /// Projects with access.
        access: &'a [String],
    },
    /// An SSH keypair: its owner and the project it is shared with.
    Keypair {
        /// Owning user.
        owner: &'a str,
        /// Project it is shared with.
        project: Option<&'a str>,
    },
    /// A registry image: its owning project (`None`: the admins'), whether it
    /// is public, and the projects it is shared with (empty unless shared).
    Image {
        /// Owning project.
        owner: Option<&'a str>,
        /// Visible to every authenticated user.
        public: bool,
        /// Member projects of a shared image.
        shared_with: &'a [String],
    },
    /// A market offer: its owning project and its audience (empty: every project).
    Offer {
        /// Owning project.
        owner: &'a str,
        /// Projects that may buy (empty: all).
        audience: &'a [String],
    },
    /// A market lease.
    Lease {
        /// Owning project (gets the node back).
        owner: &'a str,
        /// Lessee project.
        lessee: &'a str,
    },
}

impl Caller {
    /// Whether the caller is a member of `project` (admins are members of all).
    pub fn has_project(&self, project: &str) -> bool {
        self.admin || self.projects.contains(project)
    }

    /// Fails unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), Error> {
        authorize(Actor::Caller(self), Action::Administer, Resource::System)
    }

    /// Fails unless the caller may use `project` (`None`: admins only).
    pub fn require_project(&self, project: Option<&str>) -> Result<(), Error> {
        authorize(Actor::Caller(self), Action::UseProject, Resource::Project(project))
    }

    /// A refusal: 401 for an anonymous caller, else 403 with `msg`.
    pub fn denied(&self, msg: &str) -> Error {
        if self.user.is_none() { Error::Unauthenticated } else { Error::Forbidden(msg.into()) }
    }

    /// The owner's access to a network: members of the owning project, or
    /// admins for an admin-owned network.
    pub fn owns_network(&self, owner: Option<&str>) -> bool {
        match owner {
            Some(o) => self.has_project(o),
            None => self.admin,
        }
    }
}

/// Whether an offer of `owner` with `audience` (empty: everyone) is open to
/// project `buyer`: never to its owner (no wash trades). The autobuy engine
/// asks this for the project it buys for.
pub fn offer_open_to(buyer: &str, owner: &str, audience: &[String]) -> bool {
    buyer != owner && (audience.is_empty() || audience.iter().any(|a| a == buyer))
}

/// Decides whether `actor` may do `action` on `resource`; the error says why not.
pub fn authorize(actor: Actor<'_>, action: Action<'_>, resource: Resource<'_>) -> Result<(), Error> {
    let c = match actor {
        Actor::Internal(_) => return Ok(()),
        Actor::Caller(c) => c,
    };
    let allowed = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(c.denied(msg)) };
    match (action, resource) {
        (Action::Administer, _) => allowed(c.admin, "administrative access required"),
        (Action::UseProject, Resource::Project(Some(p))) => allowed(c.has_project(p), "access to the project required"),
        (Action::UseProject, Resource::Project(None)) => allowed(c.admin, "administrative access required"),
        (Action::SeeNetwork, Resource::Network { access, .. }) => allowed(
            access.is_empty() || c.admin || access.iter().any(|p| c.has_project(p)),
            "you do not have access to this network",
        ),
        (Action::ManageNetwork, Resource::Network { owner, .. }) => {
            authorize(actor, Action::SeeNetwork, resource).map_err(|_| c.denied("no access to this network"))?;
            authorize(actor, Action::UseProject, Resource::Project(owner))
        }
        (Action::RevokeNetworkAccess(p), Resource::Network { owner, .. }) => allowed(
            c.owns_network(owner) || c.has_project(p),
            "only admins, the network owner or the project itself may revoke",
        ),
        (Action::ListAttachments(None), Resource::Network { owner, .. }) => {
            allowed(c.owns_network(owner), "listing all attachments requires admin or the network's owning project")
        }
        (Action::ListAttachments(Some(p)), Resource::Network { owner, access }) => allowed(
            c.owns_network(owner) || ((access.is_empty() || access.iter().any(|a| a == p)) && c.has_project(p)),
            "you do not have access to this project",
        ),
        // A keypair is its owner's, and usable by the members (not the
        // admins) of the project it is shared with.
        (Action::UseKeypair, Resource::Keypair { owner, project }) => allowed(
            c.user.as_deref() == Some(owner) || project.is_some_and(|p| c.projects.contains(p)),
            "not your keypair",
        ),
        (Action::ShareKeypair, Resource::Project(Some(p))) => {
            if c.projects.contains(p) {
                Ok(())
            } else {
                Err(Error::Forbidden(format!("you are not a member of project {p:?}")))
            }
        }
        // Images follow Nova: public ones for everyone signed in, private ones
        // for the owner project's members, shared ones for the member projects too.
        (Action::SeeImage, Resource::Image { owner, public, shared_with }) => allowed(
            c.user.is_some()
                && (c.admin
                    || public
                    || owner.is_some_and(|o| c.projects.contains(o))
                    || shared_with.iter().any(|m| c.projects.contains(m))),
            "image not visible",
        ),
        (Action::ManageImage, Resource::Image { owner, .. }) => {
            allowed(c.admin || owner.is_some_and(|o| c.projects.contains(o)), "not the image's owner")
        }
        // The market: an owner never trades with itself, an offer with an
        // audience sells only to it; leases belong to both their parties.
        (Action::Buy(buyer), Resource::Offer { owner, audience }) => {
            if !c.has_project(buyer) {
                return Err(c.denied(&format!("you are not a member of project {buyer:?}")));
            }
            if buyer == owner {
                return Err(Error::Forbidden("a project cannot buy or bid on its own offer".into()));
            }
            allowed(offer_open_to(buyer, owner, audience), "the offer is not open to this project")
        }
        (Action::ManageOffer, Resource::Offer { owner, .. }) => {
            allowed(c.has_project(owner), "only the offer's owner may do this")
        }
        (Action::SeeLease | Action::CancelLease, Resource::Lease { owner, lessee }) => {
            allowed(c.has_project(owner) || c.has_project(lessee), "not a party to this lease")
        }
        (Action::RecallLease, Resource::Lease { owner, .. }) => {
            allowed(c.has_project(owner), "only the lease's owner may recall it")
        }
        (Action::ExtendLease, Resource::Lease { lessee, .. }) => {
            allowed(c.has_project(lessee), "only the lessee may extend a lease")
        }
        (action, resource) => Err(Error::NoPolicy(format!("{action:?} on {resource:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(projects: &[&str]) -> Caller {
        Caller { user: Some("u".into()), admin: false, projects: projects.iter().map(|p| p.to_string()).collect() }
    }

    #[test]
    fn projects_and_admins() {
        let admin = Caller { user: Some("root".into()), admin: true, ..Default::default() };
        let alice = member(&["pa"]);
        assert!(alice.require_project(Some("pa")).is_ok());
        assert!(matches!(alice.require_project(Some("pb")), Err(Error::Forbidden(_))));
        assert!(matches!(alice.require_project(None), Err(Error::Forbidden(_))), "a free node is the admins'");
        assert!(admin.require_project(Some("pb")).is_ok() && admin.require_project(None).is_ok());
        assert!(matches!(Caller::default().require_admin(), Err(Error::Unauthenticated)));
        assert!(authorize(Actor::Internal("reclaim"), Action::UseProject, Resource::Project(None)).is_ok());
    }

    #[test]
    fn networks() {
        let alice = member(&["pa"]);
        let bob = member(&["pb"]);
        let access = vec!["pa".to_string()];
        let owned = Resource::Network { owner: Some("pa"), access: &access };
        let public = Resource::Network { owner: None, access: &[] };
        let see = |c: &Caller, r| authorize(Actor::Caller(c), Action::SeeNetwork, r).is_ok();
        assert!(see(&alice, owned) && !see(&bob, owned) && see(&bob, public));
        let manage = |c: &Caller, r| authorize(Actor::Caller(c), Action::ManageNetwork, r).is_ok();
        assert!(manage(&alice, owned) && !manage(&bob, owned));
        assert!(!manage(&alice, public), "an admin-owned network is managed by admins");
        let revoke = |c: &Caller, p| authorize(Actor::Caller(c), Action::RevokeNetworkAccess(p), owned).is_ok();
        assert!(revoke(&alice, "pb") && revoke(&bob, "pb") && !revoke(&bob, "pc"));
        let list = |c: &Caller, p| authorize(Actor::Caller(c), Action::ListAttachments(p), owned).is_ok();
        assert!(list(&alice, None) && !list(&bob, None) && list(&alice, Some("pa")) && !list(&bob, Some("pb")));
    }

    #[test]
    fn keypairs() {
        let alice = Caller { user: Some("alice".into()), ..member(&["pa"]) };
        let admin = Caller { user: Some("root".into()), admin: true, ..Default::default() };
        let use_ = |c: &Caller, owner, project| {
            authorize(Actor::Caller(c), Action::UseKeypair, Resource::Keypair { owner, project }).is_ok()
        };
        assert!(use_(&alice, "alice", None) && use_(&alice, "bob", Some("pa")) && !use_(&alice, "bob", Some("pb")));
        assert!(!use_(&admin, "bob", Some("pb")), "admins do not use other people's keys");
        let share = |c: &Caller, p| authorize(Actor::Caller(c), Action::ShareKeypair, Resource::Project(Some(p)));
        assert!(share(&alice, "pa").is_ok());
        assert!(matches!(share(&admin, "pb"), Err(Error::Forbidden(m)) if m.contains("not a member")));
    }

    #[test]
    fn market() {
        let alice = member(&["pa"]);
        let bob = member(&["pb"]);
        let admin = Caller { user: Some("root".into()), admin: true, ..Default::default() };
        let to_pb = vec!["pb".to_string()];
        let open = Resource::Offer { owner: "pa", audience: &[] };
        let private = Resource::Offer { owner: "pa", audience: &to_pb };
        let buy = |c: &Caller, p, r| authorize(Actor::Caller(c), Action::Buy(p), r);
        assert!(buy(&bob, "pb", open).is_ok() && buy(&bob, "pb", private).is_ok());
        assert!(matches!(buy(&alice, "pa", open), Err(Error::Forbidden(m)) if m.contains("own offer")));
        assert!(matches!(buy(&admin, "pa", open), Err(Error::Forbidden(_))), "admins cannot wash-trade either");
        assert!(buy(&bob, "pa", open).is_err(), "only for one's own projects");
        let carol = member(&["pc"]);
        assert!(buy(&carol, "pc", open).is_ok() && buy(&carol, "pc", private).is_err());
        let manage = |c: &Caller| authorize(Actor::Caller(c), Action::ManageOffer, open).is_ok();
        assert!(manage(&alice) && !manage(&bob) && manage(&admin));
        let lease = Resource::Lease { owner: "pa", lessee: "pb" };
        let may = |c: &Caller, a| authorize(Actor::Caller(c), a, lease).is_ok();
        assert!(may(&alice, Action::SeeLease) && may(&bob, Action::SeeLease) && !may(&carol, Action::SeeLease));
        assert!(may(&alice, Action::RecallLease) && !may(&bob, Action::RecallLease));
        assert!(may(&bob, Action::ExtendLease) && !may(&alice, Action::ExtendLease));
        assert!(
            may(&alice, Action::CancelLease) && may(&bob, Action::CancelLease) && !may(&carol, Action::CancelLease)
        );
    }

    #[test]
    fn images() {
        let alice = member(&["pa"]);
        let bob = member(&["pb"]);
        let shared = vec!["pb".to_string()];
        let private = Resource::Image { owner: Some("pa"), public: false, shared_with: &[] };
        let with_pb = Resource::Image { owner: Some("pa"), public: false, shared_with: &shared };
        let public = Resource::Image { owner: None, public: true, shared_with: &[] };
        let see = |c: &Caller, r| authorize(Actor::Caller(c), Action::SeeImage, r).is_ok();
        assert!(see(&alice, private) && !see(&bob, private) && see(&bob, with_pb) && see(&bob, public));
        assert!(!see(&Caller::default(), public), "anonymous callers see no image");
        let manage = |c: &Caller, r| authorize(Actor::Caller(c), Action::ManageImage, r).is_ok();
        assert!(manage(&alice, with_pb) && !manage(&bob, with_pb) && !manage(&bob, public));
    }
}
