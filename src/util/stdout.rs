//! A closed stdout (`norbvae ... | head -c0`, a reader that went away) does not stop a command:
//! from the moment the reading end is gone, stdout is pointed at /dev/null and the command
//! finishes its work. No panic (exit 101), and nothing half done.
//!
//! Why not restore SIGPIPE's default action, as many Unix tools do: a command's product is the
//! files it writes, and stdout carries only progress lines and summaries. Dying at the first print
//! after the reader left would stop `synth` between its preview and its dataset, or a training
//! run hours from its end, for the sake of a line nobody reads. SIGPIPE would also kill the
//! process on a write to any other closed pipe (a child process's stdin), silently.
//!
//! How: at start, a stdout that is already a closed pipe is redirected at once; for a stdout that
//! is a pipe or socket, a watcher thread blocks in `poll` until the reading end closes and then
//! redirects it. A print racing that redirect (microseconds) still fails: the panic hook and
//! [`is_closed_stdout`] turn it into a one-line error and exit status 1, never a panic.
use std::os::fd::AsRawFd;

/// Install the watcher and the panic hook. Call once, early in `main` (after the process setup
/// that must precede every thread: this may start one).
pub fn discard_output_once_stdout_closes() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or("");
        if message.starts_with("failed printing to stdout") && stdout_is_closed_pipe() {
            eprintln!("error: {CLOSED_MESSAGE}");
            std::process::exit(1);
        }
        previous(info)
    }));
    if !stdout_is_pipe_or_socket() {
        return;
    }
    if stdout_is_closed_pipe() {
        redirect_stdout_to_null();
        return;
    }
    let _ = std::thread::Builder::new().name("stdout-watch".into()).spawn(|| {
        if wait_until_stdout_closes() {
            redirect_stdout_to_null();
        }
    });
}

/// What is printed when a print lost the race with the redirect.
pub const CLOSED_MESSAGE: &str = "stdout was closed by its reader while this command wrote to it; stopped";

/// True if `err` (or anything in its chain) is a broken pipe and stdout is a closed pipe: a
/// `writeln!` to stdout lost the race with the redirect.
pub fn is_closed_stdout(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) && stdout_is_closed_pipe()
}

fn stdout_is_pipe_or_socket() -> bool {
    // SAFETY: libc::stat is plain old data, for which all-zero bytes are a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into the struct we own and only reads fd 1.
    let rc = unsafe { libc::fstat(libc::STDOUT_FILENO, &mut st) };
    rc == 0 && matches!(st.st_mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFSOCK)
}

fn poll_stdout(timeout_ms: i32) -> Option<i16> {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: `fd` is one valid, initialised pollfd and the count is 1; poll does not keep it.
    let ready = unsafe { libc::poll(&mut fd, 1, timeout_ms) };
    (ready == 1).then_some(fd.revents)
}

/// Whether fd 1 is a pipe or socket whose reading end is closed: poll reports POLLERR (pipe) or
/// POLLHUP (socket) for it, requested or not. A terminal or a file does not.
pub fn stdout_is_closed_pipe() -> bool {
    stdout_is_pipe_or_socket() && poll_stdout(0).is_some_and(|r| r & (libc::POLLERR | libc::POLLHUP) != 0)
}

/// Block until the reading end of stdout closes; false if poll fails for another reason.
fn wait_until_stdout_closes() -> bool {
    loop {
        match poll_stdout(-1) {
            Some(r) if r & (libc::POLLERR | libc::POLLHUP) != 0 => return true,
            Some(r) if r & libc::POLLNVAL != 0 => return false,
            Some(_) => {}
            None => {
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return false;
                }
            }
        }
    }
}

fn redirect_stdout_to_null() {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    // SAFETY: dup2 atomically replaces fd 1 with a copy of the open /dev/null descriptor; writers
    // on other threads see either the old pipe or /dev/null, never a closed descriptor.
    unsafe {
        libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO);
    }
}
