//! [`Client`] methods of built-in netboot: a node's boot choice, full
//! mode's leases, enrollments.

use reqwest::Method;

use crate::client::{Client, NO_BODY};
use crate::error::Error;
use crate::netboot::{BootChoice, DhcpLease, Enrollment, EnrollmentAccept, NodeBoot};
use crate::path::segment;

impl Client {
    /// `GET /v1/nodes/{node}/boot`: what the node boots when it netboots.
    pub async fn node_boot(&self, node: &str) -> Result<NodeBoot, Error> {
        self.json(Method::GET, &format!("/v1/nodes/{}/boot", segment(node)), NO_BODY).await
    }

    /// `PUT /v1/nodes/{node}/boot`.
    pub async fn node_boot_set(&self, node: &str, boot: BootChoice) -> Result<NodeBoot, Error> {
        self.json(Method::PUT, &format!("/v1/nodes/{}/boot", segment(node)), Some(&NodeBoot { boot })).await
    }

    /// `GET /v1/netboot/leases`: full mode's address leases (admins).
    pub async fn netboot_leases(&self) -> Result<Vec<DhcpLease>, Error> {
        self.json(Method::GET, "/v1/netboot/leases", NO_BODY).await
    }

    /// `GET /v1/enrollments` (admins).
    pub async fn enrollments(&self) -> Result<Vec<Enrollment>, Error> {
        self.json(Method::GET, "/v1/enrollments", NO_BODY).await
    }

    /// `GET /v1/enrollments/{mac}` (admins).
    pub async fn enrollment(&self, mac: &str) -> Result<Enrollment, Error> {
        self.json(Method::GET, &format!("/v1/enrollments/{}", segment(mac)), NO_BODY).await
    }

    /// `POST /v1/enrollments/{mac}/accept`: register the machine as a free node (admins).
    pub async fn enrollment_accept(&self, mac: &str, req: &EnrollmentAccept) -> Result<Enrollment, Error> {
        self.json(Method::POST, &format!("/v1/enrollments/{}/accept", segment(mac)), Some(req)).await
    }

    /// `POST /v1/enrollments/{mac}/reject`: never netboot it again (admins).
    pub async fn enrollment_reject(&self, mac: &str) -> Result<Enrollment, Error> {
        self.json(Method::POST, &format!("/v1/enrollments/{}/reject", segment(mac)), Some(&serde_json::json!({}))).await
    }
}
