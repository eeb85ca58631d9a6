//! The uncompressed kernel inside an x86 `bzImage`.
//!
//! A bzImage is real-mode setup code followed by a self-decompressing
//! protected-mode part whose compressed payload is the kernel's ELF
//! (`vmlinux`, stripped). The boot protocol header (2.08 and later) says
//! where that payload lies (`payload_offset`, `payload_length`). A bundle can
//! carry this ELF next to the bzImage (`metalcast-image build --kexec-elf`):
//! a runtime that loads ELF kernels (kexec-tools' `elf-x86_64` loader) then
//! boots it without the kernel decompressing itself, which under emulation
//! (QEMU TCG) costs seconds for an xz-compressed kernel.
//!
//! Supported payload compressions: xz (Debian's kernels), gzip and zstd.

use std::io::Read;

use crate::error::{BundleError, Result};

/// Offset of `setup_sects` in the boot sector.
const SETUP_SECTS: usize = 0x1f1;
/// Offset of the `HdrS` magic.
const HEADER_MAGIC: usize = 0x202;
/// Offset of the boot protocol version.
const PROTOCOL_VERSION: usize = 0x206;
/// Offsets of `payload_offset` and `payload_length` (protocol 2.08+).
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;
/// Largest decompressed kernel accepted (Debian's 6.1 is 66 MB).
const MAX_VMLINUX: u64 = 512 << 20;

/// How the payload is compressed, by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `FD 37 7A 58 5A 00`.
    Xz,
    /// `1F 8B`.
    Gzip,
    /// `28 B5 2F FD`.
    Zstd,
}

fn bad(reason: impl Into<String>) -> BundleError {
    BundleError::BadInput { what: "kernel (bzImage)".into(), reason: reason.into() }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Where the compressed payload of `bz` lies, and how it is compressed.
pub fn payload(bz: &[u8]) -> Result<(&[u8], Compression)> {
    if bz.len() < 0x250 || &bz[HEADER_MAGIC..HEADER_MAGIC + 4] != b"HdrS" {
        return Err(bad("no x86 boot protocol header (\"HdrS\" at 0x202): not a bzImage"));
    }
    let version = u16::from_le_bytes([bz[PROTOCOL_VERSION], bz[PROTOCOL_VERSION + 1]]);
    if version < 0x208 {
        return Err(bad(format!(
            "boot protocol {}.{:02} has no payload fields (2.08 or later needed)",
            version >> 8,
            version & 0xff
        )));
    }
    let setup_sects = match bz[SETUP_SECTS] {
        0 => 4,
        n => n as usize,
    };
    let start = (setup_sects + 1) * 512 + le32(bz, PAYLOAD_OFFSET) as usize;
    let len = le32(bz, PAYLOAD_LENGTH) as usize;
    let p = bz
        .get(start..start.saturating_add(len))
        .ok_or_else(|| bad(format!("payload {start}+{len} lies outside the {}-byte file", bz.len())))?;
    let c = if p.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Xz
    } else if p.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if p.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        let head: String = p.iter().take(6).map(|b| format!("{b:02x}")).collect();
        return Err(bad(format!(
            "payload compression not supported (starts {head}; xz, gzip and zstd are): pass an uncompressed vmlinux instead"
        )));
    };
    Ok((p, c))
}

/// Decompresses the kernel ELF out of `bz` and checks it is an x86-64 ELF
/// executable.
pub fn extract(bz: &[u8]) -> Result<Vec<u8>> {
    let (p, c) = payload(bz)?;
    let mut out = Vec::new();
    let limit = MAX_VMLINUX + 1;
    let read = match c {
        // The kernel build appends the decompressed size (4 bytes) after the
        // stream: read one stream only.
        Compression::Xz => lzma_rust2::XzReader::new(p, false).take(limit).read_to_end(&mut out),
        Compression::Gzip => flate2::read::GzDecoder::new(p).take(limit).read_to_end(&mut out),
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(p).and_then(|d| d.single_frame().take(limit).read_to_end(&mut out))
        }
    };
    read.map_err(|e| bad(format!("{c:?} payload does not decompress: {e}")))?;
    if out.len() as u64 > MAX_VMLINUX {
        return Err(bad(format!("payload decompresses to more than {} MiB", MAX_VMLINUX >> 20)));
    }
    check_elf(&out)?;
    Ok(out)
}

/// Checks that `elf` is a 64-bit little-endian x86-64 ELF executable.
pub fn check_elf(elf: &[u8]) -> Result<()> {
    const ET_EXEC: u16 = 2;
    const EM_X86_64: u16 = 62;
    let ok = elf.len() >= 64
        && elf.starts_with(b"\x7fELF")
        && elf[4] == 2 // ELFCLASS64
        && elf[5] == 1 // little endian
        && u16::from_le_bytes([elf[16], elf[17]]) == ET_EXEC
        && u16::from_le_bytes([elf[18], elf[19]]) == EM_X86_64;
    if ok { Ok(()) } else { Err(bad("the decompressed payload is not an x86-64 ELF executable")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal ELF header of an x86-64 executable, padded.
    fn fake_elf() -> Vec<u8> {
        let mut e = vec![0u8; 4096];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[16..18].copy_from_slice(&2u16.to_le_bytes());
        e[18..20].copy_from_slice(&62u16.to_le_bytes());
        for (i, b) in e[64..].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        e
    }

    /// A bzImage-shaped file: boot sector with the header, `setup_sects`
    /// sectors of setup, then a blob in which the payload sits at `pad`.
    fn fake_bzimage(payload: &[u8], version: u16) -> Vec<u8> {
        let setup_sects = 3usize;
        let pad = 100usize;
        let mut bz = vec![0u8; (setup_sects + 1) * 512 + pad];
        bz[SETUP_SECTS] = setup_sects as u8;
        bz[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        bz[PROTOCOL_VERSION..PROTOCOL_VERSION + 2].copy_from_slice(&version.to_le_bytes());
        bz[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&(pad as u32).to_le_bytes());
        bz[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&(payload.len() as u32 + 4).to_le_bytes());
        bz.extend_from_slice(payload);
        // The decompressed size, as the kernel build appends it.
        bz.extend_from_slice(&4096u32.to_le_bytes());
        bz.extend_from_slice(&[0xcc; 64]);
        bz
    }

    #[test]
    fn gzip_and_zstd_payloads_round_trip() {
        let elf = fake_elf();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&elf).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(extract(&fake_bzimage(&gz, 0x20f)).unwrap(), elf);
        let zs = zstd::encode_all(&elf[..], 3).unwrap();
        assert_eq!(payload(&fake_bzimage(&zs, 0x20f)).unwrap().1, Compression::Zstd);
        assert_eq!(extract(&fake_bzimage(&zs, 0x20f)).unwrap(), elf);
    }

    #[test]
    fn xz_payload_with_x86_filter_round_trips() {
        // What the kernel build does: xz with the x86 BCJ filter and CRC32.
        let elf = fake_elf();
        let Ok(out) = std::process::Command::new("xz")
            .args(["--check=crc32", "--x86", "--lzma2=dict=1MiB", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().expect("stdin").write_all(&elf)?;
                c.wait_with_output()
            })
        else {
            eprintln!("SKIP xz_payload_with_x86_filter_round_trips: no xz(1) to make the payload");
            return;
        };
        assert!(out.status.success());
        let bz = fake_bzimage(&out.stdout, 0x20f);
        assert_eq!(payload(&bz).unwrap().1, Compression::Xz);
        assert_eq!(extract(&bz).unwrap(), elf);
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        let elf = fake_elf();
        let zs = zstd::encode_all(&elf[..], 3).unwrap();
        let msg = |bz: &[u8]| extract(bz).unwrap_err().to_string();
        assert!(msg(&elf).contains("not a bzImage"));
        assert!(msg(&fake_bzimage(&zs, 0x206)).contains("2.08 or later"));
        // Payload length past the end of the file.
        let mut bz = fake_bzimage(&zs, 0x20f);
        bz[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(msg(&bz).contains("outside"));
        // Unknown compression (lz4 frame magic).
        assert!(msg(&fake_bzimage(&[0x04, 0x22, 0x4d, 0x18, 0, 0], 0x20f)).contains("not supported"));
        // Corrupt stream.
        let mut broken = zs.clone();
        let mid = broken.len() / 2;
        broken[mid..].iter_mut().for_each(|b| *b ^= 0x5a);
        assert!(msg(&fake_bzimage(&broken, 0x20f)).contains("does not decompress"));
        // Decompresses, but to something that is not an x86-64 ELF.
        let mut arm = elf.clone();
        arm[18..20].copy_from_slice(&183u16.to_le_bytes());
        let zs = zstd::encode_all(&arm[..], 3).unwrap();
        assert!(msg(&fake_bzimage(&zs, 0x20f)).contains("not an x86-64 ELF"));
    }
}
