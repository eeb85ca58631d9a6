//! Everything the command prints on stdout goes through here ([`outln!`] and
//! [`outp!`] instead of `println!` and `print!`). `println!` panics when the
//! reader has gone (`metalcast completions bash | head -1`: exit 101 and a
//! panic message); here a closed pipe ends the process quietly with exit
//! code 0, as the reader asked for no more, and any other write error is
//! reported with exit code 1.
//!
//! Not by restoring the default SIGPIPE disposition: that would make the
//! process die of the signal (no exit code 0), and for `serve` it would turn
//! a write to any closed pipe (a BMC tool's stdin, a client's socket written
//! without MSG_NOSIGNAL by some library) into a silent death of the server.

use std::io::Write;

/// Writes `args` to stdout; a closed stdout ends the process (see the module docs).
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args) {
        closed(&e);
    }
}

/// Writes raw bytes to stdout and flushes them; a closed stdout ends the process.
pub fn write_bytes(b: &[u8]) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(b).and_then(|()| o.flush()) {
        closed(&e);
    }
}

/// Exit code 0 for a reader that went away (EPIPE), else 1 with the reason.
fn closed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    // stderr may be gone as well: never panic here.
    let _ = writeln!(std::io::stderr(), "error: writing to stdout: {e}");
    std::process::exit(1);
}

/// `println!` that does not panic on a closed stdout.
macro_rules! outln {
    () => {
        $crate::stdout::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that does not panic on a closed stdout.
macro_rules! outp {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}
