//! The suite runs twice, on io_uring and on epoll (`MONOIO_FORCE_LEGACY_DRIVER=1`). This
//! checks that each run really uses the driver it claims: if io_uring were silently missing,
//! both runs would test epoll.

mod common;

use ringsocket::Driver;

#[test]
fn workers_run_on_the_expected_driver() {
    // monoio probes io_uring once per process, at the first runtime. The kernel frees the
    // rings of the test binaries that ran just before this one asynchronously; wait (bounded)
    // until a ring can be made, so a transient shortage is not mistaken for no io_uring.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while io_uring::IoUring::new(256).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let server = common::start(common::echo_app());
    let forced_legacy = std::env::var_os("MONOIO_FORCE_LEGACY_DRIVER").is_some();
    let allowed_missing = std::env::var_os("RINGSOCKET_ALLOW_NO_URING").is_some();
    if forced_legacy {
        assert_eq!(server.driver(), Driver::Epoll);
    } else if !allowed_missing {
        // monoio probes io_uring once per process and silently falls back to epoll if the
        // probe fails; say why it failed.
        let probe = io_uring::IoUring::new(8).map(|_| ());
        assert_eq!(
            server.driver(),
            Driver::IoUring,
            "io_uring is not available here (a ring now: {probe:?}); set \
             RINGSOCKET_ALLOW_NO_URING=1 to test epoll only"
        );
    }
    server.shutdown();
    server.wait();
}
