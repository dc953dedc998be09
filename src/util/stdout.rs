//! A closed stdout (`norbvae ... | head -c0`, a reader that went away) ends the process quietly
//! with status 0, as ripgrep and the coreutils-style tools do, instead of a panic (exit 101).
//!
//! Why not restore SIGPIPE's default action: that would kill the process on a write to *any*
//! closed pipe, e.g. the stdin of a child process (a scheduler command, a Python benchmark),
//! silently and at any point. Here only a failed write to stdout, with stdout really a closed
//! pipe, ends the process. Writes to other pipes keep returning errors.
//!
//! What this means for a long command: every command writes its progress to stderr and prints to
//! stdout only its summary, after its results are written (`train` prints after the run directory
//! is complete), so ending there loses nothing. Should a command print to stdout mid-run, ending at
//! that print is like a kill at that point, which the run directory's atomic writes are built for.

/// Install the panic hook that turns `println!`'s "failed printing to stdout" panic into a quiet
/// exit when stdout is a closed pipe; every other panic goes to the previous hook unchanged.
pub fn exit_quietly_on_closed_stdout() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or("");
        if message.starts_with("failed printing to stdout") && stdout_is_closed_pipe() {
            std::process::exit(0);
        }
        previous(info)
    }));
}

/// True if `err` (or anything in its chain) is a broken pipe and stdout is a closed pipe: the
/// command failed only because nobody reads its output (e.g. a `writeln!` to stdout returned it).
pub fn is_closed_stdout(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) && stdout_is_closed_pipe()
}

/// Whether fd 1 is a pipe or socket whose reading end is closed: poll reports POLLERR (pipe) or
/// POLLHUP (socket) for it. A terminal or a file never does.
pub fn stdout_is_closed_pipe() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: `fd` is one valid, initialised pollfd and we pass a count of 1; a zero timeout
    // makes the call return at once. poll does not keep the pointer.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready == 1 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
