fn main() {
    norbvae::process::init_process();
    // After init_process, which must run before any thread exists: this may start one.
    norbvae::util::stdout::discard_output_once_stdout_closes();
    // The command runs on a worker of rayon's global pool rather than beside it, so that the
    // kernels' parallel regions start on the pool directly (no hand-over to a worker and back)
    // and training steps can keep the other workers awake (kernels::awake).
    // Errors are printed as one line with their context chain; exit code 1, or the signal's
    // code when a stop signal ended the work (util::signals: 130 INT, 143 TERM, 75 USR1).
    if let Err(err) = rayon::scope(|_| norbvae::cli::run()) {
        if norbvae::util::stdout::is_closed_stdout(&err) {
            eprintln!("error: {}", norbvae::util::stdout::CLOSED_MESSAGE);
        } else {
            eprintln!("error: {err:#}");
        }
        std::process::exit(norbvae::util::signals::exit_code(&err));
    }
}
