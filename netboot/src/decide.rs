//! The decision table: which boot file a client kind gets for a backend decision.

use crate::classify::Client;
use crate::config::Config;

/// The backend's answer for one MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Netboot: iPXE clients get `script_url` as their boot file (an http URL, already signed by
    /// the backend); firmware clients get iPXE first (TFTP or UEFI HTTP), which then asks again.
    Netboot {
        /// The node's iPXE script.
        script_url: String,
    },
    /// Known but must not netboot, or unknown: full mode -> an address only, no boot file;
    /// proxy -> no reply at all.
    AddressOnly,
}

/// Where a client fetches its boot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootFile {
    /// A file name in `boot_dir`, fetched from `siaddr` over TFTP.
    Tftp(String),
    /// An http URL (UEFI HTTP boot's iPXE binary, or the iPXE script).
    Http(String),
}

impl BootFile {
    /// The name or URL as it goes in the `file` field / option 67.
    pub fn as_str(&self) -> &str {
        match self {
            BootFile::Tftp(s) | BootFile::Http(s) => s,
        }
    }
}

/// The boot file for `client` when the backend decided `decision`; `None` = no boot file (address
/// only in full mode, no reply in proxy mode).
///
/// | client | boot file |
/// |---|---|
/// | `HTTPClient`, arch 16 | `http_ipxe_url` (none if unset) |
/// | PXE, arch 0 | `bios_file` (undionly.kpxe) over TFTP |
/// | PXE, arch 7/9 | `uefi_file` (ipxe.efi) over TFTP |
/// | iPXE (option 77) | the backend's `script_url` |
pub fn boot_file(client: Client, decision: &Decision, cfg: &Config) -> Option<BootFile> {
    let Decision::Netboot { script_url } = decision else {
        return None;
    };
    match client {
        Client::HttpUefi64 => cfg.http_ipxe_url.clone().map(BootFile::Http),
        Client::PxeBios => Some(BootFile::Tftp(cfg.bios_file.clone())),
        Client::PxeUefi64 => Some(BootFile::Tftp(cfg.uefi_file.clone())),
        Client::Ipxe { .. } => Some(BootFile::Http(script_url.clone())),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::Mode;

    #[test]
    fn table() {
        let mut cfg = Config::new(Mode::Proxy, Ipv4Addr::new(10, 0, 0, 1));
        cfg.uefi_file = "snponly.efi".into();
        let nb = Decision::Netboot { script_url: "http://10.0.0.1/s?t=x".into() };
        let t = |s: &str| Some(BootFile::Tftp(s.into()));
        assert_eq!(boot_file(Client::PxeBios, &nb, &cfg), t("undionly.kpxe"));
        assert_eq!(boot_file(Client::PxeUefi64, &nb, &cfg), t("snponly.efi"));
        assert_eq!(boot_file(Client::HttpUefi64, &nb, &cfg), None);
        for uefi in [false, true] {
            assert_eq!(
                boot_file(Client::Ipxe { uefi }, &nb, &cfg),
                Some(BootFile::Http("http://10.0.0.1/s?t=x".into()))
            );
        }
        cfg.http_ipxe_url = Some("http://10.0.0.1:8080/boot/ipxe.efi".into());
        assert_eq!(
            boot_file(Client::HttpUefi64, &nb, &cfg),
            Some(BootFile::Http("http://10.0.0.1:8080/boot/ipxe.efi".into()))
        );
        for c in [Client::PxeBios, Client::PxeUefi64, Client::HttpUefi64, Client::Ipxe { uefi: true }] {
            assert_eq!(boot_file(c, &Decision::AddressOnly, &cfg), None);
        }
    }
}
