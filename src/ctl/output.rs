//! What the command line writes to stdout, and how it ends when nobody reads
//! any more.
//!
//! Every command that prints (`ctl` and its event stream, `check-config`,
//! `print-default-config`, `completions`, `man-pages`) writes through
//! [`print`]. The standard library ignores SIGPIPE, so a write to a pipe
//! whose reader is gone (`anypop ctl pop ams | head`) fails with
//! `BrokenPipe`, which `println!` turns into a panic. Here it ends the
//! process the way `cat` or `grep` end in that case: killed by SIGPIPE,
//! silently, shell status 141. Any other write error (a full disk) is
//! reported on stderr and exits 1. This module owns stdout only; it must
//! not be used by the daemon (`anypop run` logs, it does not print).

use std::io::{self, Write};

/// Whether the reader is still there after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Everything was written and flushed.
    Open,
    /// The reader closed the pipe: nothing more can be delivered.
    Closed,
}

/// Writes all of `text` to `w` and flushes it; a closed pipe is
/// [`Sink::Closed`], any other failure an error.
pub fn emit(w: &mut impl Write, text: &str) -> io::Result<Sink> {
    match w.write_all(text.as_bytes()).and_then(|()| w.flush()) {
        Ok(()) => Ok(Sink::Open),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Sink::Closed),
        Err(e) => Err(e),
    }
}

/// Writes `text` to stdout; ends the process when stdout is closed (see
/// the module header) or cannot be written.
pub fn print(text: &str) {
    match emit(&mut io::stdout().lock(), text) {
        Ok(Sink::Open) => {}
        Ok(Sink::Closed) => end_by_sigpipe(),
        Err(e) => {
            // stderr may be gone as well; nothing is left to tell then.
            let _ = writeln!(io::stderr(), "anypop: cannot write the output: {e}");
            std::process::exit(1);
        }
    }
}

/// [`print`] of `text` and a newline.
pub fn print_line(text: &str) {
    print(&format!("{text}\n"));
}

/// Ends the process as a program that never ignored SIGPIPE ends on its
/// first write to a closed pipe.
fn end_by_sigpipe() -> ! {
    // SAFETY: restoring the default action of one signal and raising it
    // in this process touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached: the default action of SIGPIPE terminates. The status a
    // shell would show if it were.
    std::process::exit(128 + libc::SIGPIPE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader has gone after `room` bytes.
    struct Pipe {
        got: Vec<u8>,
        room: usize,
        error: io::ErrorKind,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room - self.got.len());
            if n == 0 {
                return Err(self.error.into());
            }
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_closed_not_an_error() {
        let mut p = Pipe {
            got: Vec::new(),
            room: 4,
            error: io::ErrorKind::BrokenPipe,
        };
        assert_eq!(emit(&mut p, "ams up\nfra up\n").ok(), Some(Sink::Closed));
        assert_eq!(p.got, b"ams ");
    }

    #[test]
    fn other_write_errors_are_errors() {
        let mut p = Pipe {
            got: Vec::new(),
            room: 0,
            error: io::ErrorKind::StorageFull,
        };
        let e = emit(&mut p, "x").expect_err("a full disk is an error");
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn an_open_writer_gets_everything() {
        let mut v = Vec::new();
        assert_eq!(emit(&mut v, "ams up\n").ok(), Some(Sink::Open));
        assert_eq!(v, b"ams up\n");
    }
}
