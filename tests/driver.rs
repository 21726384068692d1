//! The suite runs twice, on io_uring and on epoll (`MONOIO_FORCE_LEGACY_DRIVER=1`). This
//! guards the first run: if io_uring were silently unavailable, both runs would test epoll.

#[test]
fn io_uring_is_used_unless_legacy_is_forced() {
    let forced_legacy = std::env::var_os("MONOIO_FORCE_LEGACY_DRIVER").is_some();
    let allowed_missing = std::env::var_os("RINGSOCKET_ALLOW_NO_URING").is_some();
    if !forced_legacy && !allowed_missing {
        assert!(
            monoio::utils::detect_uring(),
            "io_uring is not available here; set RINGSOCKET_ALLOW_NO_URING=1 to test epoll only"
        );
    }
}
