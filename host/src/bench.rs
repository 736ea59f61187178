pub fn bench(_h: &crate::Host, _o: &crate::cli::BenchOptions) -> crate::ExitStatus {
    crate::ExitStatus::Failed
}
