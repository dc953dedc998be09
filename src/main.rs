fn main() {
    norbvae::kernels::init_process();
    // Errors are printed as one line with their context chain; exit code 1.
    if let Err(err) = norbvae::cli::run() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
