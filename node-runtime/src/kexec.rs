//! Staging the next kernel for the hand-over, by one of the kernel's two
//! interfaces:
//! - `kexec_file_load`: the kernel reads the kernel and initrd from file
//!   descriptors (our memfds) and builds the image itself;
//! - the legacy `kexec_load`, for kernels that refuse file load (built
//!   without `CONFIG_KEXEC_FILE`, or signature enforcement): user space has
//!   to lay out the segments and supply a purgatory, so this path runs
//!   kexec-tools' `kexec -c -l` (which uses `kexec_load`), handing it the
//!   memfds as `/proc/<pid>/fd/<n>` paths. The bootstrap initramfs carries
//!   `kexec` and its shared libraries (`metalcast-image initramfs
//!   --program /usr/sbin/kexec:/sbin/kexec`).
//!
//! When kexec-tools is in the image, `auto` prefers it: `kexec -c -i -l`
//! skips the SHA-256 digest that `kexec_file_load` computes over every
//! segment at load time and purgatory checks again before the jump. The
//! runtime already checked every byte against the signed manifest, and the
//! digest only guards the milliseconds between loading and the jump. If the
//! bundle also carries the kernel's uncompressed ELF (a `kernel-elf` part,
//! `metalcast-image build --kexec-elf`), `auto` loads that (`--type
//! elf-x86_64 --args-linux`) and the new kernel skips its self-decompression
//! too; the ELF makes the bundle bigger. Under QEMU TCG, last byte -> tenant
//! init took 9.0 s with `kexec_file_load`, 7.4 s with `kexec_load -i` of the
//! bzImage, 3.8 s with the ELF (perf/RESULTS.md). A kernel that refuses
//! `kexec_load` (lockdown) makes `auto` fall back to `kexec_file_load` of the
//! bzImage, which keeps the kernel's own checks.
//!
//! Either way the runtime then calls `reboot(LINUX_REBOOT_CMD_KEXEC)` itself.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sys;

/// Which interface stages the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KexecMethod {
    /// With kexec-tools in the image: `kexec_load` without purgatory checks,
    /// of the kernel ELF if the bundle has one, else of the bzImage; if the
    /// kernel refuses (lockdown), `kexec_file_load`. Without kexec-tools:
    /// `kexec_file_load`.
    #[default]
    Auto,
    /// `kexec_file_load` of the bzImage only.
    File,
    /// `kexec_load` only (through kexec-tools' `kexec`), of the kernel ELF if
    /// the bundle has one, else of the bzImage.
    Load,
}

impl std::str::FromStr for KexecMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(KexecMethod::Auto),
            "file" => Ok(KexecMethod::File),
            "load" => Ok(KexecMethod::Load),
            _ => Err(format!("kexec method {s:?}: use auto, file or load")),
        }
    }
}

/// Where `kexec` is looked for (the initramfs puts it in `/sbin`; PID 1 has no `PATH`).
pub const KEXEC_TOOL_PATHS: [&str; 4] = ["/sbin/kexec", "/usr/sbin/kexec", "/bin/kexec", "/usr/bin/kexec"];

/// How the kernel was staged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Staged {
    /// `elf` (`kexec_load` of the kernel ELF via kexec-tools), `file`
    /// (`kexec_file_load` of the bzImage) or `load` (`kexec_load` of the
    /// bzImage via kexec-tools).
    pub method: &'static str,
    /// Why `auto` fell back from its first choice, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// Staging failures.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// `--kexec-method file` and the kernel refuses file load.
    #[error("kexec_file_load refused ({0}); kexec method auto or load would use kexec_load")]
    FileRefused(#[source] std::io::Error),
    /// `kexec_file_load` failed for another reason (bad image, no memory).
    #[error("kexec_file_load: {0}")]
    File(#[source] std::io::Error),
    /// The `kexec_load` path failed; `after` is the file-load refusal that led there, if any.
    #[error("{}kexec_load via kexec-tools: {reason}", after.as_ref().map(|a| format!("kexec_file_load refused ({a}); ")).unwrap_or_default())]
    Load {
        /// The file-load refusal that led to this path (method `auto`).
        after: Option<String>,
        /// What went wrong.
        reason: String,
    },
    /// `auto`: kexec-tools' `kexec_load` failed, and so did `kexec_file_load` after it.
    #[error("{load}; then kexec_file_load: {file}")]
    Both {
        /// The `kexec_load` failure.
        load: String,
        /// The `kexec_file_load` failure.
        #[source]
        file: std::io::Error,
    },
    /// The call returned success but no image is staged.
    #[error("{0} returned but /sys/kernel/kexec_loaded is not 1")]
    NotLoaded(&'static str),
}

/// The first existing `kexec` of [`KEXEC_TOOL_PATHS`], then of `PATH`.
pub fn find_tool() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    KEXEC_TOOL_PATHS
        .iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path).map(|d| d.join("kexec")))
        .find(|p| p.is_file())
}

/// A file descriptor of this process as a path another process can open.
fn fd_path(f: &File) -> PathBuf {
    PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd()))
}

/// The arguments of `kexec` for a `kexec_load` (`-c`, no purgatory checks:
/// `-i`) of `kernel` (an x86-64 ELF if `elf`, else a bzImage) with `initrd`
/// and `cmdline`.
pub fn tool_args(kernel: &Path, elf: bool, initrd: Option<&Path>, cmdline: &str) -> Vec<String> {
    let mut v: Vec<String> = ["-c", "-i", "-l"].map(String::from).to_vec();
    if elf {
        v.extend(["--type", "elf-x86_64", "--args-linux"].map(String::from));
    }
    v.push(kernel.display().to_string());
    if let Some(i) = initrd {
        v.push(format!("--initrd={}", i.display()));
    }
    v.push(format!("--command-line={cmdline}"));
    v
}

/// Stages with the legacy `kexec_load` through kexec-tools.
fn load_with_tool(
    kernel: &File,
    elf: bool,
    initrd: Option<&File>,
    cmdline: &str,
    after: Option<String>,
) -> Result<(), StageError> {
    let fail = |reason: String| StageError::Load { after: after.clone(), reason };
    let tool = find_tool().ok_or_else(|| {
        fail(format!("no kexec binary in {KEXEC_TOOL_PATHS:?} or PATH (kexec-tools not in the image)"))
    })?;
    let (k, i) = (fd_path(kernel), initrd.map(fd_path));
    let out = Command::new(&tool)
        .args(tool_args(&k, elf, i.as_deref(), cmdline))
        .output()
        .map_err(|e| fail(format!("running {}: {e}", tool.display())))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!("{} exited with {}: {}", tool.display(), out.status, msg.trim())));
    }
    Ok(())
}

/// The kernel to stage: the bzImage, and the same kernel as an ELF if the bundle has one.
#[derive(Debug, Clone, Copy)]
pub struct Kernel<'a> {
    /// The bzImage (for `kexec_file_load`, or kexec-tools without an ELF).
    pub bzimage: &'a File,
    /// The uncompressed ELF (`kernel-elf` part), if any.
    pub elf: Option<&'a File>,
}

/// Stages `kernel` (with `initrd` and `cmdline`) for `reboot(LINUX_REBOOT_CMD_KEXEC)` by `method`.
pub fn stage(
    method: KexecMethod,
    kernel: Kernel<'_>,
    initrd: Option<&File>,
    cmdline: &str,
) -> Result<Staged, StageError> {
    let file = |after: Option<String>| -> Result<Staged, StageError> {
        match sys::kexec_file_load(kernel.bzimage, initrd, cmdline) {
            Ok(()) => Ok(Staged { method: "file", fallback_reason: after }),
            Err(sys::KexecError::FileLoadRefused(e)) if method == KexecMethod::File => Err(StageError::FileRefused(e)),
            Err(sys::KexecError::FileLoadRefused(e)) => {
                println!("metalcast: kexec_file_load refused ({e}); falling back to kexec_load (kexec-tools)");
                load_with_tool(kernel.bzimage, false, initrd, cmdline, Some(e.to_string()))?;
                Ok(Staged { method: "load", fallback_reason: Some(e.to_string()) })
            }
            Err(sys::KexecError::Other(e)) => Err(StageError::File(e)),
        }
    };
    let staged = match method {
        KexecMethod::File => file(None)?,
        KexecMethod::Load => {
            let f = kernel.elf.unwrap_or(kernel.bzimage);
            load_with_tool(f, kernel.elf.is_some(), initrd, cmdline, None)?;
            Staged { method: if kernel.elf.is_some() { "elf" } else { "load" }, fallback_reason: None }
        }
        // kexec-tools in the image: `kexec_load` of the ELF if there is one, else of the bzImage.
        KexecMethod::Auto if find_tool().is_some() => {
            let (f, elf) = (kernel.elf.unwrap_or(kernel.bzimage), kernel.elf.is_some());
            match load_with_tool(f, elf, initrd, cmdline, None) {
                Ok(()) => Staged { method: if elf { "elf" } else { "load" }, fallback_reason: None },
                Err(e) => {
                    println!("metalcast: {e}; trying kexec_file_load of the bzImage");
                    match sys::kexec_file_load(kernel.bzimage, initrd, cmdline) {
                        Ok(()) => Staged { method: "file", fallback_reason: Some(e.to_string()) },
                        Err(sys::KexecError::FileLoadRefused(f) | sys::KexecError::Other(f)) => {
                            return Err(StageError::Both { load: e.to_string(), file: f });
                        }
                    }
                }
            }
        }
        KexecMethod::Auto => file(None)?,
    };
    if !sys::kexec_loaded() {
        return Err(StageError::NotLoaded(if staged.method == "file" { "kexec_file_load" } else { "kexec -c -l" }));
    }
    Ok(staged)
}

/// Unstages whatever kernel is staged (a hand-over that must not happen after all).
pub fn unstage() -> std::io::Result<()> {
    sys::kexec_unload()
}

/// Stages in a background thread (on duplicates of the descriptors), so the
/// work overlaps with what the caller does meanwhile; the result carries
/// the staging's own duration.
pub fn stage_in_background(
    method: KexecMethod,
    kernel: Kernel<'_>,
    initrd: Option<&File>,
    cmdline: String,
) -> std::io::Result<std::thread::JoinHandle<Result<(Staged, std::time::Duration), StageError>>> {
    let bzimage = kernel.bzimage.try_clone()?;
    let elf = kernel.elf.map(File::try_clone).transpose()?;
    let initrd = initrd.map(File::try_clone).transpose()?;
    Ok(std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        let k = Kernel { bzimage: &bzimage, elf: elf.as_ref() };
        stage(method, k, initrd.as_ref(), &cmdline).map(|s| (s, t0.elapsed()))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_tool_arguments() {
        assert_eq!("load".parse::<KexecMethod>(), Ok(KexecMethod::Load));
        assert_eq!("file".parse::<KexecMethod>(), Ok(KexecMethod::File));
        assert_eq!("auto".parse::<KexecMethod>(), Ok(KexecMethod::Auto));
        assert!("kexec".parse::<KexecMethod>().is_err());
        assert_eq!(
            tool_args(Path::new("/proc/9/fd/3"), false, Some(Path::new("/proc/9/fd/4")), "console=ttyS0 quiet"),
            ["-c", "-i", "-l", "/proc/9/fd/3", "--initrd=/proc/9/fd/4", "--command-line=console=ttyS0 quiet"]
        );
        assert_eq!(tool_args(Path::new("k"), false, None, ""), ["-c", "-i", "-l", "k", "--command-line="]);
        assert_eq!(
            tool_args(Path::new("v"), true, None, "x"),
            ["-c", "-i", "-l", "--type", "elf-x86_64", "--args-linux", "v", "--command-line=x"]
        );
        let e = StageError::Load { after: Some("Operation not permitted".into()), reason: "no kexec binary".into() };
        assert_eq!(
            e.to_string(),
            "kexec_file_load refused (Operation not permitted); kexec_load via kexec-tools: no kexec binary"
        );
        assert_eq!(
            serde_json::to_value(Staged { method: "load", fallback_reason: None }).unwrap(),
            serde_json::json!({ "method": "load" })
        );
    }
}
